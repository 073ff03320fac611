"""What has landed: one input per Common Crawl file, per book file, per Reddit month.

Each input has a stable key (the Dagster partition key) and a fingerprint that changes whenever one of
its files is replaced, so a sensor can tell new and changed inputs from ones already ingested.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from rosie_pipeline.ingest.books import is_book_file
from rosie_pipeline.ingest.common_crawl import is_cc_file
from rosie_pipeline.ingest.reddit import dump_month
from rosie_pipeline.step import fingerprint
from rosie_pipeline.paths import RosieHome

INGEST_SOURCES = ("common_crawl", "books", "reddit")
#: Substrings Dagster refuses in partition keys; files whose names carry them are not ingested.
_BAD_KEY_PARTS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")


@dataclass(frozen=True)
class LandedInput:
    source: str
    key: str
    paths: tuple[Path, ...]

    @property
    def folder_name(self) -> str:
        """The key as one folder name (keys of files in nested landing folders contain '/')."""
        return self.key.replace("/", "__")

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
    return sorted((i for i in inputs if not any(bad in i.key for bad in _BAD_KEY_PARTS)), key=lambda i: i.key)


def find_input(home: RosieHome, source: str, key: str) -> LandedInput | None:
    return next((i for i in scan_landing(home, source) if i.key == key), None)


def _key(folder: Path, path: Path) -> str:
    return path.relative_to(folder).as_posix()
