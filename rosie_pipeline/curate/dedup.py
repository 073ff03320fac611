"""Exact and near-duplicate removal across all sources and across refreshes.

Exact duplicates share the hash of their normalised text. Near duplicates share a band of their
MinHash signatures in a datasketch ``MinHashLSH`` (defaults: 5-word shingles, 14 bands x 8 rows =
112 permutations, an S-curve threshold of about 0.72). The index outlives a run:

* local (default): every run that keeps documents adds one *segment* (Parquet: id, exact hash,
  cluster id, signature) under ``index/``; the LSH is rebuilt from the segments on load.
* Redis: the LSH lives in Redis through datasketch's storage config, so many workers dedup against
  one index. Keys are stored as the document ids' UTF-8 bytes, never pickled: whoever can write to that
  Redis can at worst plant a bogus candidate id, not run code in every worker. A segment is inserted only after it is committed locally; a set in Redis records which
  segments it holds, and any committed segment it lacks (a run killed mid-insert) is re-inserted
  before the next run starts, so the index is never seen half-updated.

The stage manifest is written last: until it names a segment, that segment does not exist.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from datasketch import LeanMinHash, MinHash, MinHashLSH

from rosie_pipeline.atomic import read_json, write_json_atomic
from rosie_pipeline.documents import DOCUMENT_SCHEMA
from rosie_pipeline.parquet import ParquetSink, iter_rows
from rosie_pipeline.step import fingerprint, matches

_WORD = re.compile(r"\w+")
_MASK32 = np.uint64(0xFFFFFFFF)
_MIX = np.uint64(0x9E3779B1)  # odd 32-bit constant: shingle hash = polynomial in its word hashes

SEGMENT_SCHEMA = pa.schema(
    [("id", pa.string()), ("exact_hash", pa.string()), ("cluster_id", pa.string()), ("signature", pa.list_(pa.uint32())),
     ("partition", pa.string())]
)


#: How document ids are stored as LSH keys in Redis (recorded next to the index).
KEY_FORMAT = b"utf-8"


@dataclass(frozen=True)
class DedupOptions:
    shingle_words: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1
    redis_url: str | None = None
    redis_prefix: str = "rosie:lsh"

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    @property
    def threshold(self) -> float:
        """Jaccard similarity at which a pair is found with probability 1/2 (the S-curve's midpoint)."""
        return float((1 / self.bands) ** (1 / self.rows))


def exact_key(text: str) -> str:
    """Hash of the text with case, punctuation and spacing folded away."""
    return xxhash.xxh3_128_hexdigest(" ".join(_WORD.findall(text.lower())).encode())


class Signer:
    """MinHash signatures, datasketch's own permutations applied to 32-bit shingle hashes.

    Each word is hashed once (xxh32); a shingle's hash is a polynomial in its words' hashes, computed
    for all shingles at once in numpy, so no shingle string is ever built.
    """

    def __init__(self, options: DedupOptions) -> None:
        self.options = options
        self._template = MinHash(num_perm=options.num_perm, seed=options.seed, hashfunc=int)
        self.scheme: str = self._template.scheme

    def shingle_hashes(self, text: str) -> np.ndarray:
        words = _WORD.findall(text.lower())
        if not words:
            words = [text]
        hashes = np.fromiter((xxhash.xxh32_intdigest(w.encode()) for w in words), dtype=np.uint64, count=len(words))
        n = min(self.options.shingle_words, len(words))
        count = len(words) - n + 1
        combined = hashes[:count].copy()
        for k in range(1, n):
            combined = (combined * _MIX + hashes[k : k + count]) & _MASK32
        return np.unique(combined)

    def signature(self, text: str) -> LeanMinHash:
        minhash = self._template.copy()
        minhash.update_batch(self.shingle_hashes(text))
        return LeanMinHash(minhash)


@dataclass
class Verdict:
    kind: str  # "unique" | "exact" | "near" | "same_doc"
    cluster_id: str


class DedupIndex:
    """The persistent index: exact hashes, cluster ids and the LSH over every document kept so far."""

    def __init__(self, root: Path | None, options: DedupOptions) -> None:
        """``root`` None keeps the index in memory only (for one-off sets such as generated dialogues)."""
        self.root = root
        self.options = options
        self.signer = Signer(options)
        self.manifest_path = root / "manifest.json" if root is not None else None
        stored = read_json(self.manifest_path) if self.manifest_path is not None else None
        self.manifest: dict[str, Any] = stored or {"segments": [], "partitions": {}}
        self._check_options()
        self.exact: dict[str, str] = {}  # exact hash -> cluster id
        self.cluster_of: dict[str, str] = {}  # document id -> cluster id
        self.owner: dict[str, str | None] = {}  # document id -> the partition that first kept it (None: unknown)
        self._this_run: set[str] = set()  # ids already kept in this run
        self._pending: list[dict[str, Any]] = []
        self._lsh = self._new_lsh(self.options.redis_url)
        self._run_lsh = self._new_lsh(None) if self.options.redis_url else self._lsh
        self._load()

    # -- loading ------------------------------------------------------------------------------------
    def _check_options(self) -> None:
        stored = self.manifest.get("options")
        current = {"shingle_words": self.options.shingle_words, "bands": self.options.bands,
                   "rows": self.options.rows, "seed": self.options.seed}
        if stored and stored != current:
            raise ValueError(
                f"the dedup index in {self.root} was built with {stored}, not {current}; "
                "signatures would not be comparable. Use the same settings or a new index folder."
            )
        self.manifest["options"] = current

    def _new_lsh(self, redis_url: str | None) -> MinHashLSH:
        storage = None
        if redis_url:
            from redis.connection import parse_url

            storage = {"type": "redis", "basename": self.options.redis_prefix.encode(), "redis": parse_url(redis_url)}
        return MinHashLSH(num_perm=self.options.num_perm, params=(self.options.bands, self.options.rows),
                          storage_config=storage, prepickle=False)

    def _segments(self) -> Iterator[tuple[str, pa.Table]]:
        for name in self.manifest["segments"]:
            assert self.root is not None
            yield name, pq.read_table(self.root / "index" / name)

    def _load(self) -> None:
        applied = self._redis_applied() if self.options.redis_url else set()
        if self.options.redis_url:
            self._check_key_format(applied)
        for name, table in self._segments():
            owners = table["partition"].to_pylist() if "partition" in table.column_names else [None] * table.num_rows
            for doc_id, exact, cluster, owner in zip(table["id"].to_pylist(), table["exact_hash"].to_pylist(),
                                                     table["cluster_id"].to_pylist(), owners):
                self.exact.setdefault(exact, cluster)
                self.cluster_of[doc_id] = cluster
                self.owner.setdefault(doc_id, owner)
            if name not in applied:
                self._insert(self._lsh, table, replace=bool(self.options.redis_url))
                if self.options.redis_url:
                    self._redis().sadd(self._applied_key, name)

    def _insert(self, lsh: MinHashLSH, table: pa.Table, replace: bool) -> None:
        with lsh.insertion_session() as session:
            for doc_id, signature in zip(table["id"].to_pylist(), table["signature"].to_numpy(zero_copy_only=False)):
                key = doc_id.encode()
                if replace and key in lsh:
                    lsh.remove(key)  # left by a run killed mid-insert
                session.insert(key, LeanMinHash(seed=self.options.seed, hashvalues=signature, scheme=self.signer.scheme), check_duplication=False)

    # -- redis bookkeeping --------------------------------------------------------------------------
    @property
    def _applied_key(self) -> str:
        return f"{self.options.redis_prefix}:segments"

    def _redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.options.redis_url)

    def _check_key_format(self, applied: set[str]) -> None:
        """Refuse an index whose keys an older Rosie pickled (reading them would unpickle what Redis holds)."""
        key = f"{self.options.redis_prefix}:key-format"
        stored = self._redis().get(key)
        if applied and stored != KEY_FORMAT:
            prefix = self.options.redis_prefix
            raise ValueError(
                f"the Redis LSH index under {prefix!r} was written with pickled keys, which Rosie no longer reads "
                f"(unpickling what sits in Redis can run code). Delete its keys (redis-cli --scan --pattern "
                f"'{prefix}*' | xargs redis-cli del); the next run re-inserts the local segments."
            )
        self._redis().set(key, KEY_FORMAT)

    def _redis_applied(self) -> set[str]:
        return {m.decode() for m in self._redis().smembers(self._applied_key)}

    # -- checking -----------------------------------------------------------------------------------
    def check(self, doc_id: str, text: str, partition: str | None = None) -> Verdict:
        """Classify a document and, when it is new, add it to this run's pending segment.

        A document id the index knows is the same document again: kept when its own partition is re-run,
        an exact duplicate when another partition (a re-downloaded WARC, a thread spanning two months) or
        this run already kept it."""
        if doc_id in self._this_run:
            return Verdict("exact", self.cluster_of[doc_id])
        if doc_id in self.cluster_of:
            owner = self.owner.get(doc_id)
            if owner is not None and partition is not None and owner != partition:
                return Verdict("exact", self.cluster_of[doc_id])
            self._this_run.add(doc_id)
            return Verdict("same_doc", self.cluster_of[doc_id])
        exact = exact_key(text)
        if exact in self.exact:
            return Verdict("exact", self.exact[exact])
        signature = self.signer.signature(text)
        found = self._lsh.query(signature)
        if self._run_lsh is not self._lsh:
            found += self._run_lsh.query(signature)
        candidates = {key.decode("utf-8", errors="replace") for key in found}
        if candidates:
            return Verdict("near", min(candidates))  # only cluster representatives are ever indexed
        self.exact[exact] = doc_id
        self.cluster_of[doc_id] = doc_id
        self.owner[doc_id] = partition
        self._this_run.add(doc_id)
        self._run_lsh.insert(doc_id.encode(), signature, check_duplication=False)
        self._pending.append({"id": doc_id, "exact_hash": exact, "cluster_id": doc_id,
                              "signature": signature.hashvalues.astype(np.uint32).tolist(), "partition": partition})
        return Verdict("unique", doc_id)

    def commit(self, partitions: dict[str, Any]) -> None:
        """Write this run's segment, then the manifest naming it (the commit), then update Redis."""
        if self.root is None or self.manifest_path is None:
            raise ValueError("an in-memory dedup index cannot be committed")
        name = None
        if self._pending:
            name = f"segment-{len(self.manifest['segments']):06d}-{uuid.uuid4().hex[:8]}.parquet"
            with ParquetSink(self.root / "index" / name, SEGMENT_SCHEMA) as sink:
                for row in self._pending:
                    sink.write(row)
            self.manifest["segments"].append(name)
        self.manifest["partitions"].update(partitions)
        write_json_atomic(self.manifest_path, self.manifest)
        if name and self.options.redis_url:
            self._insert(self._lsh, pq.read_table(self.root / "index" / name), replace=True)
            self._redis().sadd(self._applied_key, name)
        self._pending = []


DEDUP_SCHEMA = DOCUMENT_SCHEMA.append(pa.field("cluster_id", pa.string()))
DUPLICATES_SCHEMA = pa.schema(
    [("id", pa.string()), ("source", pa.string()), ("url", pa.string()), ("title", pa.string()),
     ("cluster_id", pa.string()), ("kind", pa.string()), ("text", pa.string())]
)
AUDIT_TEXT_CHARS = 1_000


@dataclass
class PartitionDedup:
    key: str
    documents_in: int = 0
    kept: int = 0
    exact: int = 0
    near: int = 0
    unchanged: bool = False

    @property
    def duplicate_rate(self) -> float:
        return (self.exact + self.near) / self.documents_in if self.documents_in else 0.0


def run_dedup(
    inputs: dict[str, Path], out_root: Path, options: DedupOptions, force: bool = False
) -> list[PartitionDedup]:
    """Deduplicate each input partition (key -> documents.parquet), in key order, against the index
    and everything before it; write ``<key>/documents.parquet`` (kept, with ``cluster_id``) and
    ``<key>/duplicates.parquet`` (audit), then commit the index."""
    index = DedupIndex(out_root, options)
    done: dict[str, Any] = {}
    results = []
    for key in sorted(inputs):
        fingerprint_now = fingerprint([inputs[key]])
        previous = index.manifest["partitions"].get(key)
        outputs = [out_root / key / "documents.parquet", out_root / key / "duplicates.parquet"]
        if not force and matches(previous, {"input": fingerprint_now}, outputs):
            results.append(PartitionDedup(key, **previous["stats"], unchanged=True))
            continue
        result = PartitionDedup(key)
        with ParquetSink(outputs[0], DEDUP_SCHEMA) as kept, ParquetSink(outputs[1], DUPLICATES_SCHEMA) as dups:
            for row in iter_rows(inputs[key]):
                result.documents_in += 1
                verdict = index.check(row["id"], row["text"], key)
                if verdict.kind in ("unique", "same_doc"):
                    result.kept += 1
                    kept.write({**{k: row.get(k) for k in DOCUMENT_SCHEMA.names}, "cluster_id": verdict.cluster_id})
                    continue
                setattr(result, verdict.kind, getattr(result, verdict.kind) + 1)
                dups.write({"id": row["id"], "source": row["source"], "url": row.get("url"),
                            "title": row.get("title"), "cluster_id": verdict.cluster_id, "kind": verdict.kind,
                            "text": row["text"][:AUDIT_TEXT_CHARS]})
        done[key] = {"input": fingerprint_now,
                     "stats": {"documents_in": result.documents_in, "kept": result.kept,
                               "exact": result.exact, "near": result.near}}
        results.append(result)
    index.commit(done)
    return results
