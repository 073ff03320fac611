import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rosie_pipeline.chat_format import EOS, PAD, SPECIAL_TOKENS
from rosie_pipeline.tokenize import shards
from rosie_pipeline.tokenize.shards import ShardOptions, split_of, verify_split, write_shards
from rosie_pipeline.tokenize.tokenizer import (
    TokenizerOptions,
    load_tokenizer,
    sample_texts,
    save_tokenizer,
    special_token_ids,
    train_tokenizer,
)
from tests.fixtures import prose_document, random_document

CORPUS = [(f"doc{i}", random_document(i, 150) + "\n" + prose_document(2, start=i)) for i in range(300)]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    tokenizer = train_tokenizer(sample_texts(CORPUS, 10**9), TokenizerOptions(vocab_size=600))
    sha = save_tokenizer(tokenizer, folder, TokenizerOptions())
    return folder, sha


def test_special_tokens_come_first_and_in_order(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir[0])
    ids = special_token_ids(tokenizer)
    assert [ids[t] for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tokenizer.get_vocab_size() == 600
    assert len(tokenizer.encode("<|user|>hello<|emotion:happy|>").ids) >= 3
    assert tokenizer.encode("<|emotion:happy|>").ids == [ids["<|emotion:happy|>"]]


def test_transformers_loads_it_with_rosies_tokens(tokenizer_dir):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir[0]))
    assert hf.eos_token == EOS and hf.pad_token == PAD and hf.eos_token_id == 0
    assert set(SPECIAL_TOKENS) <= set(hf.all_special_tokens)
    text = "Rosie says <|emotion:happy|> hi!"
    assert hf.decode(hf.encode(text)) == text
    config = json.loads((tokenizer_dir[0] / "tokenizer_config.json").read_text())
    assert config["rosie_emotions"][0] == "neutral" and "drag" in config["rosie_events"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_decode_encode_round_trips_any_unicode(tokenizer_dir, text):
    tokenizer = load_tokenizer(tokenizer_dir[0])
    assert tokenizer.decode(tokenizer.encode(text).ids, skip_special_tokens=False) == text


def test_sample_is_deterministic_and_bounded():
    first = list(sample_texts(CORPUS, 5_000, keep_permille=500))
    assert first == list(sample_texts(CORPUS, 5_000, keep_permille=500))
    assert 0 < len(first) < len(CORPUS) and sum(map(len, first)) < 5_000 + max(map(len, first))


def test_the_sample_is_the_same_whatever_the_lake_order_and_reaches_every_source():
    web = [(f"web-{i}", f"w{i}".ljust(100)) for i in range(2_000)]          # 200k characters of crawl
    dialogues = [(f"dialogue-{i}", f"d{i}".ljust(100)) for i in range(200)]  # read after it
    sample = sample_texts(iter(web + dialogues), 20_000)            # one pass over a generator
    assert 190 <= len(sample) <= 200 and sum(map(len, sample)) <= 20_000
    assert 0 < sum(text.startswith("d") for text in sample) < 50     # about a tenth, as in the lake
    assert sorted(sample_texts(iter(dialogues + web[::-1]), 20_000)) == sorted(sample)
    assert sample_texts(iter(web[:10]), 10**9) == [text for _, text in web[:10]]   # all of it when it fits, in order


@pytest.mark.parametrize("group_rows", [512, 7])
def test_shards_pack_documents_with_eos_and_split_by_hash(tokenizer_dir, tmp_path, monkeypatch, group_rows):
    """Rows stream into a shard a Parquet row group at a time (7: several groups a shard, the last one short)."""
    monkeypatch.setattr(shards, "ROW_GROUP_ROWS", group_rows)
    folder, sha = tokenizer_dir
    tokenizer = load_tokenizer(folder)
    options = ShardOptions(seq_len=63, val_permille=100, target_shard_bytes=64 * 100 * 2)
    manifests = write_shards(CORPUS, tokenizer, sha, tmp_path / "shards", options)
    eos = tokenizer.token_to_id(EOS)
    for split in ("train", "val"):
        manifest = verify_split(tmp_path / "shards" / split, sha)
        assert manifest == manifests[split] and manifest["dtype"] == "uint16" and manifest["row_length"] == 64
        rows = np.concatenate([
            np.stack(pq.read_table(tmp_path / "shards" / split / s["file"])["tokens"].to_numpy(zero_copy_only=False))
            for s in manifest["shards"]
        ])
        assert rows.shape == (manifest["rows"], 64) and rows.dtype == np.uint16
        docs = [text for doc_id, text in CORPUS if split_of(doc_id, 100) == split]
        expected = np.concatenate([np.append(tokenizer.encode(t).ids, eos) for t in docs])
        assert manifest["documents"] == len(docs)
        assert np.array_equal(rows.reshape(-1), expected[: rows.size])  # the packed stream, in order
        assert manifest["tokens_dropped"] == expected.size - rows.size < 64
        for shard in manifest["shards"]:
            groups = pq.ParquetFile(tmp_path / "shards" / split / shard["file"]).metadata.num_row_groups
            assert groups == -(-shard["rows"] // group_rows)
    assert len(manifests["train"]["shards"]) > 1 and manifests["val"]["rows"] > 0


def test_a_document_that_spells_control_tokens_is_packed_as_text(tokenizer_dir, tmp_path):
    folder, sha = tokenizer_dir
    tokenizer = load_tokenizer(folder)
    spelled = "A forum post about " + "".join(SPECIAL_TOKENS) + " markup."
    manifests = write_shards([("a", spelled)], tokenizer, sha, tmp_path / "s", ShardOptions(seq_len=15, val_permille=0))
    table = pq.read_table(tmp_path / "s" / "train" / manifests["train"]["shards"][0]["file"])
    ids = [i for row in table["tokens"].to_pylist() for i in row]
    specials = {tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    assert len(ids) > 100 and not specials & set(ids)  # the rows (all but the last few tokens) hold no control token
    assert spelled.startswith(tokenizer.decode(ids, skip_special_tokens=False))


def test_verify_detects_tampering_and_another_tokenizer(tokenizer_dir, tmp_path):
    folder, sha = tokenizer_dir
    write_shards(CORPUS, load_tokenizer(folder), sha, tmp_path / "s", ShardOptions(seq_len=31))
    with pytest.raises(ValueError, match="another tokenizer"):
        verify_split(tmp_path / "s" / "train", "0" * 64)
    shard = tmp_path / "s" / "train" / "shard-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="sha256"):
        verify_split(tmp_path / "s" / "train", sha)


def test_interrupted_build_keeps_the_previous_shards(tokenizer_dir, tmp_path):
    folder, sha = tokenizer_dir
    write_shards(CORPUS, load_tokenizer(folder), sha, tmp_path / "s", ShardOptions(seq_len=31))
    before = (tmp_path / "s" / "train" / "manifest.json").read_text()

    def dying():
        yield from CORPUS[:100]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_shards(dying(), load_tokenizer(folder), sha, tmp_path / "s", ShardOptions(seq_len=31))
    assert (tmp_path / "s" / "train" / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporary folder left behind
