import numpy as np
import polars as pl
import pytest
from datasketch import MinHash

from rosie_pipeline.curate.dedup import DedupIndex, DedupOptions, Signer, exact_key, run_dedup
from rosie_pipeline.documents import DOCUMENT_SCHEMA, make_document
from rosie_pipeline.parquet import ParquetSink
from tests.fixtures import prose_document, random_document


def _write(path, docs):
    with ParquetSink(path, DOCUMENT_SCHEMA) as sink:
        for doc in docs:
            sink.write(doc)
    return path


def _doc(locator, text, source="web"):
    return make_document(source=source, locator=locator, text=text)


def test_exact_key_ignores_case_punctuation_and_spacing():
    assert exact_key("Hello,   World!") == exact_key("hello world") != exact_key("hello there")


def test_signatures_estimate_jaccard():
    signer = Signer(DedupOptions())
    a, b = prose_document(8), prose_document(7) + "\nA different closing paragraph about a cat and a kite."
    sa, sb = signer.signature(a), signer.signature(b)
    ha, hb = set(signer.shingle_hashes(a).tolist()), set(signer.shingle_hashes(b).tolist())
    true_jaccard = len(ha & hb) / len(ha | hb)
    assert abs(sa.jaccard(sb) - true_jaccard) < 0.12
    # the same permutations as datasketch's own MinHash fed the same shingle hashes
    reference = MinHash(num_perm=112, seed=1, hashfunc=int)
    reference.update_batch(signer.shingle_hashes(a))
    assert np.array_equal(reference.hashvalues, sa.hashvalues)



def test_dedup_within_and_across_refreshes(tmp_path):
    base = prose_document(8)
    first = _write(tmp_path / "in" / "a.parquet", [
        _doc("1", base),
        _doc("2", base.upper()),  # exact after folding case
        _doc("3", base.replace("rainy Tuesday", "sunny Wednesday")),  # near
        _doc("4", random_document(4)),
    ])
    out = tmp_path / "dedup"
    [result] = run_dedup({"web/a": first}, out, DedupOptions())
    assert (result.documents_in, result.kept, result.exact, result.near) == (4, 2, 1, 1)
    kept = pl.read_parquet(out / "web/a" / "documents.parquet")
    assert kept["id"].to_list() == [_doc("1", "")["id"], _doc("4", "")["id"]]
    assert kept["cluster_id"].to_list() == kept["id"].to_list()
    dups = pl.read_parquet(out / "web/a" / "duplicates.parquet")
    assert set(dups["cluster_id"]) == {_doc("1", "")["id"]} and sorted(dups["kind"]) == ["exact", "near"]

    # the same files again: nothing is read, nothing added
    [again] = run_dedup({"web/a": first}, out, DedupOptions())
    assert again.unchanged and len(list((out / "index").glob("*.parquet"))) == 1

    # a later dump with a copy of an old document and a new one: deduplicated against everything kept
    second = _write(tmp_path / "in" / "b.parquet", [_doc("5", base + " "), _doc("6", random_document(6))])
    results = run_dedup({"web/a": first, "reddit/b": second}, out, DedupOptions())
    b = next(r for r in results if r.key == "reddit/b")
    assert (b.kept, b.exact) == (1, 1)
    assert len(DedupIndex(out, DedupOptions()).cluster_of) == 3


def test_changed_partition_keeps_its_own_documents(tmp_path):
    path = _write(tmp_path / "a.parquet", [_doc("1", prose_document(8))])
    out = tmp_path / "dedup"
    run_dedup({"web/a": path}, out, DedupOptions())
    _write(path, [_doc("1", prose_document(8)), _doc("2", random_document(2))])  # re-ingested, grew
    [result] = run_dedup({"web/a": path}, out, DedupOptions())
    assert not result.unchanged and (result.kept, result.exact, result.near) == (2, 0, 0)


def test_killed_run_commits_nothing(tmp_path, monkeypatch):
    path = _write(tmp_path / "a.parquet", [_doc(str(i), random_document(i)) for i in range(3)])
    out = tmp_path / "dedup"
    original = DedupIndex.check
    calls = {"n": 0}

    def dying_check(self, doc_id, text, partition=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return original(self, doc_id, text, partition)

    monkeypatch.setattr(DedupIndex, "check", dying_check)
    with pytest.raises(KeyboardInterrupt):
        run_dedup({"web/a": path}, out, DedupOptions())
    monkeypatch.setattr(DedupIndex, "check", original)
    assert not (out / "manifest.json").exists() and not list(out.glob("index/*.parquet"))
    [result] = run_dedup({"web/a": path}, out, DedupOptions())
    assert result.kept == 3


def test_changed_lsh_settings_are_refused(tmp_path):
    path = _write(tmp_path / "a.parquet", [_doc("1", prose_document(8))])
    run_dedup({"web/a": path}, tmp_path / "dedup", DedupOptions())
    with pytest.raises(ValueError, match="would not be comparable"):
        run_dedup({"web/a": path}, tmp_path / "dedup", DedupOptions(bands=16))


def test_redis_index_is_shared_and_recovers(tmp_path, redis_url):
    import redis

    options = DedupOptions(redis_url=redis_url, redis_prefix="rosie-test")
    base = prose_document(8)
    first = _write(tmp_path / "a.parquet", [_doc("1", base)])
    out = tmp_path / "dedup"
    run_dedup({"web/a": first}, out, options)
    client = redis.Redis.from_url(redis_url)
    assert client.smembers("rosie-test:segments")
    # a second worker with its own local folder but the same Redis finds the near-duplicate there
    other = DedupIndex(tmp_path / "elsewhere", options)
    assert other.check("9", base.replace("rainy Tuesday", "sunny Wednesday")).kind == "near"
    # Redis lost its record of the segment (a run killed mid-insert): the next run re-inserts it
    client.delete("rosie-test:segments")
    second = _write(tmp_path / "b.parquet", [_doc("2", base.replace("rainy", "grey"))])
    results = run_dedup({"web/a": first, "web/b": second}, out, options)
    assert next(r for r in results if r.key == "web/b").near == 1
    assert len(client.smembers("rosie-test:segments")) == 1


class _Planted:
    """Unpickling this writes a file: what an attacker with write access to Redis would plant."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_planted_in_redis_is_never_unpickled(tmp_path, redis_url):
    import pickle

    import redis

    options = DedupOptions(redis_url=redis_url, redis_prefix="rosie-planted")
    base = prose_document(8)
    run_dedup({"web/a": _write(tmp_path / "a.parquet", [_doc("1", base)])}, tmp_path / "dedup", options)
    client = redis.Redis.from_url(redis_url)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Planted(str(marker)))
    buckets = [k for k in client.scan_iter("rosie-planted*") if client.type(k) == b"set" and b"segments" not in k]
    assert buckets
    for bucket in buckets:  # every band bucket now also holds the payload
        client.sadd(bucket, payload)
    verdict = DedupIndex(tmp_path / "worker", options).check("2", base.replace("rainy", "grey"))
    assert verdict.kind == "near" and not marker.exists()


def test_a_redis_index_with_pickled_keys_is_refused_with_the_fix(tmp_path, redis_url):
    import redis

    options = DedupOptions(redis_url=redis_url, redis_prefix="rosie-old")
    run_dedup({"web/a": _write(tmp_path / "a.parquet", [_doc("1", prose_document(8))])}, tmp_path / "dedup", options)
    redis.Redis.from_url(redis_url).delete("rosie-old:key-format")  # as an older Rosie left it
    with pytest.raises(ValueError, match="pickled keys.*redis-cli"):
        DedupIndex(tmp_path / "dedup", options)


def test_documents_with_the_same_id_in_two_partitions_are_kept_once(tmp_path):
    docs = [_doc(str(n), random_document(n)) for n in range(3)]
    first = _write(tmp_path / "a.parquet", docs)
    again = _write(tmp_path / "b.parquet", docs + [docs[0]])  # a re-downloaded WARC, and one record twice
    results = {r.key: r for r in run_dedup({"web/a": first, "web/b": again}, tmp_path / "dedup", DedupOptions())}
    assert results["web/a"].kept == 3 and results["web/b"].kept == 0 and results["web/b"].exact == 4
    kept = pl.concat([pl.read_parquet(tmp_path / "dedup" / key / "documents.parquet") for key in ("web/a", "web/b")])
    assert kept.height == kept["id"].n_unique() == 3
    # a changed partition that is re-run keeps its own documents; the other partition still does not
    first = _write(tmp_path / "a.parquet", docs + [_doc("9", random_document(99))])
    results = {r.key: r for r in run_dedup({"web/a": first, "web/b": again}, tmp_path / "dedup", DedupOptions())}
    assert results["web/a"].kept == 4 and results["web/b"].unchanged
