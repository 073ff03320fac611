"""Peak memory of building the tokenizer as the lake grows, at a fixed sample (target: independent of the lake).

    python bench/bench_tokenizer_sample.py [--docs 100000 300000] [--sample-mb 20] [--out bench/RESULTS.md]

Writes a lake of curated-document Parquet files (generated prose, ~1 KB a document), then runs
``rosie_pipeline.tokenize.build.build_tokenizer`` on it in a process of its own, once per lake size, and
reports each process's peak resident memory and wall time. The sample (``--sample-mb`` characters) is the same
for every size, so any growth is memory that follows the lake rather than the sample.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("the a little desk friend rosie likes warm tea and quiet rain on the window while the cat sleeps near "
         "books of maps songs and old letters from a town by the sea where bread is baked every morning").split()


def write_lake(folder: Path, docs: int, per_file: int = 20_000) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng, files = random.Random(0), []
    for start in range(0, docs, per_file):
        count = min(per_file, docs - start)
        texts = [" ".join(rng.choice(WORDS) for _ in range(180)) for _ in range(count)]
        path = folder / f"part-{len(files):04d}.parquet"
        pq.write_table(pa.table({"id": [f"doc-{start + i}" for i in range(count)], "text": texts}), path)
        files.append(path)
    return files


def child(lake: Path, sample_chars: int, out: Path) -> dict[str, float]:
    from rosie_pipeline.tokenize.build import TokenizerInputs, build_tokenizer
    from rosie_pipeline.tokenize.tokenizer import TokenizerOptions

    started = time.perf_counter()
    inputs = TokenizerInputs(sorted(lake.glob("*.parquet")), [], [])
    build = build_tokenizer(inputs, out, TokenizerOptions(vocab_size=4096), sample_chars, retrain=True)
    return {"seconds": time.perf_counter() - started, "sampled_chars": build.sample_chars,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--sample-mb", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.sample_mb * 10**6, Path(args.child[1]))))
        return
    rows = ["| documents in the lake | lake text | sampled | peak memory | wall time |", "| ---: | ---: | ---: | ---: | ---: |"]
    with tempfile.TemporaryDirectory() as scratch:
        for docs in args.docs:
            lake = Path(scratch) / f"lake-{docs}"
            files = write_lake(lake, docs)
            size = sum(f.stat().st_size for f in files)
            done = subprocess.run([sys.executable, __file__, "--sample-mb", str(args.sample_mb), "--child", str(lake),
                                   str(Path(scratch) / f"tok-{docs}")], capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(f"| {docs:,} | {size / 2**20:,.0f} MiB (Parquet) | {r['sampled_chars'] / 1e6:.1f} M chars | "
                        f"{r['peak_mb']:,.0f} MB | {r['seconds']:.0f} s |")
            print(rows[-1], flush=True)
    body = (f"`build_tokenizer` (4,096-token BPE) on lakes of generated ~1 KB documents, a {args.sample_mb} M-character "
            f"sample each. Command: `python bench/bench_tokenizer_sample.py --docs {' '.join(map(str, args.docs))}`."
            "\n\n" + "\n".join(rows))
    from bench.results import publish

    publish("Tokenizer sample memory", body, args.out)


if __name__ == "__main__":
    main()
