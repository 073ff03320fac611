"""Small token shards written here in the contract format (rosie_model reads the contract, not
rosie_pipeline's code), including the dialogue columns that phases 2 and 3 use."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rosie_pipeline.tokenize.tokenizer import TokenizerOptions, sample_texts, save_tokenizer, train_tokenizer
from tests.fixtures import prose_document, random_document

SEQ_LEN = 32


def write_split(folder: Path, tokenizer_sha: str, rows: list[dict], rows_per_shard: int = 40,
                pad_id: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for start in range(0, len(rows), rows_per_shard):
        chunk = rows[start : start + rows_per_shard]
        columns = {"tokens": pa.FixedSizeListArray.from_arrays(
            pa.array(np.concatenate([r["tokens"] for r in chunk]).astype(np.uint16)), SEQ_LEN + 1)}
        if "loss_mask" in chunk[0]:
            columns["loss_mask"] = pa.array([r["loss_mask"] for r in chunk], pa.list_(pa.bool_()))
            columns["emotion"] = pa.array([r["emotion"] for r in chunk], pa.int16())
            columns["persona"] = pa.array([r["persona"] for r in chunk], pa.int16())
            columns["memory"] = pa.array([r["memory"] for r in chunk], pa.list_(pa.list_(pa.int32())))
        name = f"shard-{len(shards):05d}.parquet"
        pq.write_table(pa.table(columns), folder / name)
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        shards.append({"file": name, "rows": len(chunk), "tokens": len(chunk) * (SEQ_LEN + 1), "sha256": digest})
    manifest = {"dataset": "test", "split": folder.name, "seq_len": SEQ_LEN, "row_length": SEQ_LEN + 1,
                "dtype": "uint16", "tokenizer_sha256": tokenizer_sha, "shards": shards,
                "rows": len(rows), "tokens": len(rows) * (SEQ_LEN + 1)}
    if pad_id is not None:
        manifest["pad_id"] = pad_id
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A tokenizer plus pretraining and dialogue splits; returns a dict of paths."""
    root = tmp_path_factory.mktemp("corpus")
    texts = [(f"d{i}", random_document(i, 100) + "\n" + prose_document(2, start=i % 24)) for i in range(200)]
    tokenizer = train_tokenizer(sample_texts(texts, 10**9), TokenizerOptions(vocab_size=400))
    sha = save_tokenizer(tokenizer, root / "tokenizer", TokenizerOptions())
    stream = np.concatenate([np.append(e.ids, 0) for e in tokenizer.encode_batch([t for _, t in texts])])
    n = len(stream) // (SEQ_LEN + 1)
    plain = [{"tokens": row} for row in stream[: n * (SEQ_LEN + 1)].reshape(n, SEQ_LEN + 1)]
    rng = np.random.default_rng(0)
    dialogue = [{**row, "loss_mask": (np.arange(SEQ_LEN + 1) >= SEQ_LEN // 2).tolist(),
                 "emotion": int(rng.integers(0, 10)), "persona": int(rng.integers(0, 3)),
                 "memory": [row["tokens"][:5].astype(int).tolist(), row["tokens"][5:9].astype(int).tolist()]}
                for row in plain]
    return {
        "root": root,
        "tokenizer": root / "tokenizer",
        "tokenizer_sha": sha,
        "train": write_split(root / "pretrain" / "train", sha, plain[:160]),
        "val": write_split(root / "pretrain" / "val", sha, plain[160:200]),
        "dialogue": write_split(root / "dialogue" / "train", sha, dialogue[:120]),
    }


def train_env(home: Path) -> dict[str, str]:
    """The environment a trainer subprocess runs in: this test's home, no inherited MLflow store or Pipes."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DAGSTER_PIPES_CONTEXT")}
    return {**env, "ROSIE_HOME": str(home)}


def train_args(corpus: dict, out_dir: Path, phase: str = "base", **settings) -> list[str]:
    values = {"train_data": str(corpus["dialogue" if phase != "base" else "train"]),
              "val_data": str(corpus["val"]), "tokenizer": str(corpus["tokenizer"]), "out_dir": str(out_dir),
              "steps": 8, "batch_size": 4, "log_every": 1, "eval_every": 4, "eval_batches": 2,
              "checkpoint_every": 100, "warmup_steps": 2, "model_overrides": {"max_seq_len": SEQ_LEN},
              **settings}
    args = ["--phase", phase]
    for key, value in values.items():
        args += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return args


@pytest.fixture(scope="session")
def chat_model_dir(corpus, tmp_path_factory):
    """A real model folder (tiny preset, random weights, the corpus tokenizer with Rosie's chat format)."""
    import torch
    from tokenizers import Tokenizer

    from rosie_model.core.checkpoint import save_weights
    from rosie_model.core.config import preset
    from rosie_model.core.model import RosieTransformer

    folder = tmp_path_factory.mktemp("chat_model")
    vocab = Tokenizer.from_file(str(corpus["tokenizer"] / "tokenizer.json")).get_vocab_size()
    config = preset("tiny", vocab_size=vocab, max_seq_len=256)
    torch.manual_seed(0)
    config.save(folder / "config.json")
    save_weights(RosieTransformer(config).state_dict(), folder / "weights" / "base.safetensors")
    (folder / "tokenizer").mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / "tokenizer" / name).write_bytes((corpus["tokenizer"] / name).read_bytes())
    return folder
