"""The bad-input corpus (tests/hostile.py) through the real readers: inputs tried, survived, good records lost.

    python bench/bad_inputs.py [--out bench/RESULTS.md]

Not a speed benchmark: the reliability table the README quotes, from the same cases ``make test`` runs
(tests/test_hostile_input.py), each an input that mixes good records with one crafted or damaged thing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results import write_section  # noqa: E402
from tests.hostile import CASES, run_case, table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the table into this results file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = [run_case(case, Path(tmp) / f"{n:03d}") for n, case in enumerate(CASES)]
    body = table(outcomes)
    print(body)
    if args.out:
        write_section(args.out, "Bad-input corpus (tests/hostile.py)", body)


if __name__ == "__main__":
    main()
