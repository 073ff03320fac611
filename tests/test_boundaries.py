"""DESIGN's dependency direction, read from the source: rosie_pipeline never imports dagster; rosie_model never
imports dagster or rosie_pipeline (it runs alone on a GPU box and reads only the shard contract); dagster_project
never imports rosie_model (it launches it as a process). Inside rosie_model each room's folder says what it may
import, and no module imports one that imports it back."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"rosie_pipeline": {"dagster", "dagster_project", "rosie_model"},
             "rosie_model": {"dagster", "dagster_project", "rosie_pipeline"},
             "dagster_project": {"rosie_model"}}
#: The rooms of rosie_model and the rooms each may import (besides itself).
ROOMS = {"core": set(), "training": {"core"}, "serving": {"core"},
         "evaluation": {"core", "serving", "training.data"}, "export": {"core", "serving"}}


def _imported_modules(path: Path) -> set[str]:
    """Every absolute module name imported anywhere in the file (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_design(package):
    offenders = {str(p.relative_to(ROOT)): sorted({n.split(".")[0] for n in _imported_modules(p)} & FORBIDDEN[package])
                 for p in (ROOT / package).rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_each_room_of_rosie_model_imports_only_what_its_folder_allows(room):
    allowed = {room} | ROOMS[room]
    offenders = {}
    for path in (ROOT / "rosie_model" / room).rglob("*.py"):
        used = {n.removeprefix("rosie_model.") for n in _imported_modules(path) if n.startswith("rosie_model.")}
        bad = sorted(n for n in used if not any(n == a or n.startswith(a + ".") for a in allowed))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert not offenders


def test_no_import_circle_between_modules():
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts): p
               for pkg in ("rosie_model", "rosie_pipeline", "dagster_project") for p in (ROOT / pkg).rglob("*.py")}
    graph = {name: {m for m in _imported_modules(path) if m in modules and m != name} for name, path in modules.items()}
    circles, done = [], set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            circles.append(trail[trail.index(name):] + [name])
            return
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, trail + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert not circles
