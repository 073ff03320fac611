"""Atomic file output: write to a temporary sibling, then ``os.replace`` it into place.

A run killed half-way leaves at most a stray ``*.tmp-<pid>`` file, never a truncated output that a later
stage would trust; re-running writes the file again, and :func:`remove_stale_temps` clears what a dead
process left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def temp_sibling(path: Path) -> Path:
    """A unique temporary name in the same folder (so the final rename stays on one filesystem)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


_TEMP = re.compile(r"^\..+\.tmp-([0-9]+)$")


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(folder: Path) -> int:
    """Delete the temporary files in ``folder`` whose writer process is gone; returns how many."""
    removed = 0
    for path in folder.glob(".*.tmp-*") if folder.is_dir() else ():
        match = _TEMP.match(path.name)
        if match and path.is_file() and not process_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any | None:
    """The parsed JSON file, or ``None`` when it is missing or unreadable (treated as 'not done')."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
