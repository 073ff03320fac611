"""What has landed: one input per Common Crawl file, per book file, per Reddit month.

Each input has a stable key (the Dagster partition key) and a fingerprint that changes whenever one of
its files is replaced, so a sensor can tell new and changed inputs from ones already ingested.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from rosie_pipeline.ingest.books import is_book_file
from rosie_pipeline.ingest.common_crawl import is_cc_file
from rosie_pipeline.ingest.reddit import dump_month
from rosie_pipeline.step import fingerprint
from rosie_pipeline.paths import RosieHome

INGEST_SOURCES = ("common_crawl", "books", "reddit")
#: Substrings Dagster refuses in partition keys; a file whose name carries them gets a key without them.
_BAD_KEY_PARTS = re.compile(r"\.\.\.+|[\x00-\x1f\x7f]+")
#: Longest folder name a key is used as as it is (file systems allow 255 bytes; temporary names need room).
_MAX_FOLDER_BYTES = 120
_PLAIN_FOLDER = re.compile(r"[\w.+=@,-]+")


@dataclass(frozen=True)
class LandedInput:
    source: str
    key: str
    paths: tuple[Path, ...]

    @property
    def folder_name(self) -> str:
        """The key as one folder name: itself when it is a short plain name, else a readable part and a
        digest of the key (``sub/dir.txt`` and ``sub__dir.txt`` stay apart; 250-character names fit)."""
        if _PLAIN_FOLDER.fullmatch(self.key) and len(self.key.encode()) <= _MAX_FOLDER_BYTES \
                and not self.key.startswith("."):
            return self.key
        readable = re.sub(r"[^\w.+=@,-]+", "_", self.key).strip("._")[:80]
        return f"{readable}~{_digest(self.key)}"

    def version(self) -> str:
        """A short digest of the files' names, sizes and mtimes."""
        payload = json.dumps(fingerprint(self.paths), sort_keys=True).encode()
        return hashlib.sha1(payload).hexdigest()[:12]


def scan_landing(home: RosieHome, source: str) -> list[LandedInput]:
    """Every input of ``source`` now in ``landing/``, sorted by key."""
    folder = home.landing_dir(source)
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if source == "common_crawl":
        inputs = [LandedInput(source, _key(folder, p), (p,)) for p in files if is_cc_file(p)]
    elif source == "books":
        inputs = [LandedInput(source, _key(folder, p), (p,)) for p in files if is_book_file(p)]
    elif source == "reddit":
        months: dict[str, list[Path]] = defaultdict(list)
        for path in files:
            month = dump_month(path)
            if month:
                months[month].append(path)
        inputs = [LandedInput(source, month, tuple(paths)) for month, paths in months.items()]
    else:
        raise ValueError(f"{source!r} is not an ingest source; expected one of {INGEST_SOURCES}")
    return sorted(inputs, key=lambda i: i.key)


def find_input(home: RosieHome, source: str, key: str) -> LandedInput | None:
    return next((i for i in scan_landing(home, source) if i.key == key), None)


def _key(folder: Path, path: Path) -> str:
    """The file's path under its landing folder, made a valid Dagster partition key: a name with a TAB, a
    newline or ``...`` (or bytes that are not UTF-8) gets those parts replaced and a digest of the name."""
    name = path.relative_to(folder).as_posix()
    clean = _BAD_KEY_PARTS.sub("_", name).encode("utf-8", "replace").decode("utf-8")
    if clean != name or name.encode("utf-8", "surrogateescape") != name.encode("utf-8", "replace"):
        return f"{clean}~{_digest(name)}"
    return name


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:10]
