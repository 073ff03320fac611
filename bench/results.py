"""bench/RESULTS.md holds one section per benchmark; each run replaces its own section."""

from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, title: str, body: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n", encoding="utf-8")


def publish(title: str, body: str, out: Path | None) -> None:
    """A benchmark's result: printed, and written as its section of ``out`` when one is given."""
    print(body)
    if out is not None:
        write_section(out, title, body)
