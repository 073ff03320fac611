"""Peak memory of packing token shards, against the size of a shard (target: at most 1.5x one shard).

    python bench/bench_shard_writer.py [--shard-mb 128] [--out bench/RESULTS.md]

Feeds the shard writer of ``rosie_pipeline.tokenize.shards`` batches of token ids (uint16, 32k vocabulary,
rows of 2049) as ``write_shards`` does, enough for two full shards, in a process of its own; reports its peak
resident memory above the process's baseline (the interpreter and libraries, measured after a one-row shard, so
the Parquet writer's own code is already resident).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH_TOKENS = 1_000_000


def measure(shard_mb: int) -> dict[str, float]:
    import numpy as np

    from rosie_pipeline.tokenize.shards import _SplitWriter

    rows_per_shard = shard_mb * 2**20 // (2049 * 2)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:  # a one-row shard first: the Parquet writer's code is then resident
        warm = _SplitWriter(Path(folder), 2048, np.dtype(np.uint16), 1)
        warm.add(rng.integers(0, 32_000, 2049).tolist(), 1)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with tempfile.TemporaryDirectory() as folder:
        writer = _SplitWriter(Path(folder), 2048, np.dtype(np.uint16), rows_per_shard)
        for _ in range(2 * rows_per_shard * 2049 // BATCH_TOKENS + 1):
            writer.add(rng.integers(0, 32_000, BATCH_TOKENS).tolist(), 1)   # a batch of ids, as tokenizers gives them
        writer.finish()
        shard = (Path(folder) / writer.shards[0]["file"]).stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"shard_bytes": rows_per_shard * 2049 * 2, "parquet_bytes": shard, "peak_above_baseline": peak - baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shard-mb", type=int, default=128)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.shard_mb)))
        return
    done = subprocess.run([sys.executable, __file__, "--child", "--shard-mb", str(args.shard_mb)], capture_output=True,
                          text=True, check=True)
    r = json.loads(done.stdout.strip().splitlines()[-1])
    body = (f"Two {args.shard_mb} MB shards (uint16 rows of 2049 ids) packed from batches of {BATCH_TOKENS:,} ids. "
            f"Command: `python bench/bench_shard_writer.py --shard-mb {args.shard_mb}`.\n\n"
            "| shard in memory | peak memory above baseline | ratio |\n| ---: | ---: | ---: |\n"
            f"| {r['shard_bytes'] / 2**20:,.0f} MiB | {r['peak_above_baseline'] / 2**20:,.0f} MiB | "
            f"**{r['peak_above_baseline'] / r['shard_bytes']:.2f}x** |")
    from bench.results import publish

    publish("Shard writer memory", body, args.out)


if __name__ == "__main__":
    main()
