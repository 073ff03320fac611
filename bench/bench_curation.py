"""Curation, MinHash and tokenisation throughput, Rosie against its peers on the same input.

    python bench/bench_curation.py [--docs 600] [--dedup-docs 2000] [--out bench/RESULTS.md]

One process, one core each (docs/s per core). Peers: datatrove's GopherQuality, GopherRepetition,
C4Quality and FineWebQuality filters and its MinhashDedupSignature stage (the default sha1/64-bit,
14 buckets x 8 hashes, 5-grams), and a bare ``tokenizers`` ``encode_batch``. Besides speed it reports
how often Rosie's keep/drop decision equals datatrove's, and whether both find the same duplicate
clusters.
"""

from __future__ import annotations

import argparse
import os
import platform
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import conversations, documents, with_duplicates  # noqa: E402
from bench.results import write_section  # noqa: E402
from rosie_pipeline.curate import filters as rosie  # noqa: E402
from rosie_pipeline.curate.dedup import DedupOptions, Signer  # noqa: E402


def _time(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_filters(docs: list[str]) -> list[dict[str, object]]:
    from datatrove.data import Document
    from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter

    pairs = [
        ("Gopher quality", rosie.GopherQuality(), GopherQualityFilter()),
        ("Gopher repetition", rosie.GopherRepetition(), GopherRepetitionFilter()),
        ("C4 quality", rosie.C4Quality(), C4QualityFilter()),
        ("FineWeb quality", rosie.FineWebQuality(), FineWebQualityFilter()),
    ]
    # warm both (spaCy model load, regex compilation) outside the timed loop
    GopherQualityFilter().filter(Document(text=docs[0], id="warm"))
    rows = []
    for name, ours, theirs in pairs:
        ours_seconds, ours_keep = _time(lambda: [ours(rosie.Doc(t, "web")) is None for t in docs])
        theirs_seconds, theirs_keep = _time(
            lambda: [_kept(theirs.filter(Document(text=t, id=str(i)))) for i, t in enumerate(docs)]
        )
        agree = sum(a == b for a, b in zip(ours_keep, theirs_keep)) / len(docs)
        rows.append({"what": name, "rosie": len(docs) / ours_seconds, "peer": len(docs) / theirs_seconds,
                     "unit": "docs/s", "agreement": agree, "kept": sum(ours_keep) / len(docs)})
    return rows


def _kept(result: object) -> bool:
    return result is True or (not isinstance(result, tuple) and bool(result))


def bench_minhash(docs: list[str]) -> dict[str, object]:
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets, MinhashDedupSignature
    from datatrove.utils.hashing import HashConfig

    # sha1/64-bit: datatrove's default xxhash config fails on xxhash 4 (it passes str, not bytes)
    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8,
                           hash_config=HashConfig(hash_fc="sha1", precision=64))
    with tempfile.TemporaryDirectory() as tmp:
        signature = MinhashDedupSignature(output_folder=f"{tmp}/sigs", config=config)
        theirs_seconds, _ = _time(lambda: signature.run(iter(Document(text=t, id=str(i)) for i, t in enumerate(docs))))
        for rank in range(config.num_buckets):
            MinhashDedupBuckets(input_folder=f"{tmp}/sigs", output_folder=f"{tmp}/buckets", config=config).run(
                rank=rank, world_size=config.num_buckets)
        their_pairs = set()
        for path in Path(f"{tmp}/buckets").glob("*.dups"):
            data = path.read_bytes()
            for f1, d1, f2, d2 in struct.iter_unpack("<4I", data):
                their_pairs.add((min(d1, d2), max(d1, d2)))

    signer = Signer(DedupOptions())
    ours_seconds, signatures = _time(lambda: [signer.signature(t) for t in docs])
    options = DedupOptions()
    bands: dict[tuple[int, bytes], list[int]] = {}
    for i, sig in enumerate(signatures):
        for b in range(options.bands):
            bands.setdefault((b, sig.hashvalues[b * options.rows : (b + 1) * options.rows].tobytes()), []).append(i)
    our_pairs = {(a, b) for members in bands.values() for k, a in enumerate(members) for b in members[k + 1 :]}
    ours_clusters, theirs_clusters = _clusters(our_pairs, len(docs)), _clusters(their_pairs, len(docs))
    same = _co_clustered(ours_clusters) & _co_clustered(theirs_clusters)
    union = _co_clustered(ours_clusters) | _co_clustered(theirs_clusters)
    return {"what": "MinHash signatures", "rosie": len(docs) / ours_seconds, "peer": len(docs) / theirs_seconds,
            "unit": "docs/s", "agreement": len(same) / len(union) if union else 1.0,
            "kept": 1 - sum(len(c) - 1 for c in ours_clusters) / len(docs)}


def _clusters(pairs: set[tuple[int, int]], n: int) -> list[set[int]]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(a)] = find(b)
    groups: dict[int, set[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), set()).add(i)
    return [g for g in groups.values() if len(g) > 1]


def _co_clustered(clusters: list[set[int]]) -> set[tuple[int, int]]:
    return {(a, b) for c in clusters for a in c for b in c if a < b}


def bench_tokenize(texts: list[str]) -> dict[str, object]:
    from rosie_pipeline.tokenize.shards import ShardOptions, write_shards
    from rosie_pipeline.tokenize.tokenizer import TokenizerOptions, train_tokenizer

    tokenizer = train_tokenizer(iter(texts), TokenizerOptions(vocab_size=32_000))
    tokenizer.encode_batch(texts[:100])
    bare_seconds, encodings = _time(lambda: tokenizer.encode_batch(texts))
    tokens = sum(len(e.ids) for e in encodings)
    with tempfile.TemporaryDirectory() as tmp:
        ours_seconds, _ = _time(lambda: write_shards(((str(i), t) for i, t in enumerate(texts)), tokenizer, "bench",
                                                     Path(tmp) / "shards", ShardOptions(seq_len=2048)))
    return {"what": "Tokenize + pack shards", "rosie": tokens / ours_seconds, "peer": tokens / bare_seconds,
            "unit": "tokens/s", "agreement": None, "kept": None}


def table(rows: list[dict[str, object]], peers: dict[str, str]) -> str:
    lines = ["| stage | Rosie | peer | peer tool | ratio | decisions agree | kept |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for row in rows:
        agree = "-" if row["agreement"] is None else f"{row['agreement']:.2%}"
        kept = "-" if row["kept"] is None else f"{row['kept']:.0%}"
        lines.append(f"| {row['what']} | {row['rosie']:,.0f} {row['unit']} | {row['peer']:,.0f} {row['unit']} | "
                     f"{peers[str(row['what'])]} | **{row['rosie'] / row['peer']:.1f}x** | {agree} | {kept} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=600, help="documents for the filter benchmark")
    parser.add_argument("--doc-chars", type=int, default=4_000)
    parser.add_argument("--dedup-docs", type=int, default=2_000)
    parser.add_argument("--tokenize-docs", type=int, default=7_000)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    args = parser.parse_args()
    os.environ.setdefault("RAYON_NUM_THREADS", "1")  # encode_batch on one core too: per-core figures
    from loguru import logger  # datatrove logs every bucket at INFO

    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    filter_docs = documents(args.docs, args.doc_chars)
    dedup_docs = with_duplicates(documents(args.dedup_docs, 1_700, degraded_share=0.0, seed=2))
    token_texts = list(conversations())[: args.tokenize_docs]
    print(f"input: {len(filter_docs)} documents of ~{args.doc_chars} chars (30% degraded); "
          f"{len(dedup_docs)} documents of ~1.7k chars with 20% edited copies; {len(token_texts)} conversations",
          flush=True)
    rows = bench_filters(filter_docs)
    rows.append(bench_minhash(dedup_docs))
    rows.append(bench_tokenize(token_texts))
    peers = {"Gopher quality": "datatrove GopherQualityFilter", "Gopher repetition": "datatrove GopherRepetitionFilter",
             "C4 quality": "datatrove C4QualityFilter", "FineWeb quality": "datatrove FineWebQualityFilter",
             "MinHash signatures": "datatrove MinhashDedupSignature", "Tokenize + pack shards": "tokenizers encode_batch"}
    result = table(rows, peers)
    header = (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}; one core per side. Command: `python bench/bench_curation.py`.")
    print(header)
    print(result)
    if args.out:
        write_section(args.out, "Curation, dedup and tokenisation", f"{header}\n\n{result}")


if __name__ == "__main__":
    main()
