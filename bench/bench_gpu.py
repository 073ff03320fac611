"""The training engine on a GPU: tokens/s, MFU, peak memory, and the share of step time spent waiting for data
and saving checkpoints, for rosie-125m, rosie-seed and rosie-500m at 8-16 x 2048.

    python bench/bench_gpu.py [--out bench/RESULTS.md]      # on a CUDA machine
    python bench/bench_gpu.py --smoke                       # the same code path, tiny, on the CPU

This is the real trainer (:class:`rosie_model.training.trainer.Trainer`: its data reader with prefetch, loss,
fused AdamW, bf16 autocast, torch.compile as its default says, background checkpoints) on token shards written
here in the contract format: random ids from a 32k vocabulary, full rows, base phase. Each run warms up
(compiling), then times its steps the way the training loop takes them: the losses read back every 10 steps
(the loop's only wait for the device between log lines); then one checkpoint. "Waiting for data" is the share
of step time the loop waited for a batch; a checkpoint holds the step for the copy of weights and optimizer to
the host and is written to disk by a background thread meanwhile; its share is of 250 steps (the default
``checkpoint_every``) plus that hold. MLflow is not involved: what is measured is the
engine, not the tracking.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rosie_model.training.config import TrainConfig  # noqa: E402
from rosie_model.training.trainer import Trainer  # noqa: E402

SPECIAL = ("<|endoftext|>", "<|pad|>")


def write_tokenizer(folder: Path, vocab: int) -> str:
    """A word-level tokenizer of ``vocab`` ids (the model is sized by it); returns its sha256."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    folder.mkdir(parents=True, exist_ok=True)
    words = {name: i for i, name in enumerate(SPECIAL)} | {f"w{i}": i for i in range(len(SPECIAL), vocab)}
    tokenizer = Tokenizer(WordLevel(words, unk_token=SPECIAL[0]))
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": SPECIAL[0], "pad_token": SPECIAL[1]}))
    return hashlib.sha256((folder / "tokenizer.json").read_bytes()).hexdigest()


def write_shards(folder: Path, tokenizer_sha: str, rows: int, seq_len: int, vocab: int, per_shard: int = 64) -> Path:
    """Full rows of random non-special ids, in the token-shard contract (manifest, Parquet, sha256)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng, shards = np.random.default_rng(0), []
    for start in range(0, rows, per_shard):
        count = min(per_shard, rows - start)
        ids = rng.integers(len(SPECIAL), vocab, count * (seq_len + 1)).astype(np.uint16)
        name = f"shard-{len(shards):05d}.parquet"
        pq.write_table(pa.table({"tokens": pa.FixedSizeListArray.from_arrays(pa.array(ids), seq_len + 1)}), folder / name)
        shards.append({"file": name, "rows": count, "tokens": count * (seq_len + 1),
                       "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest()})
    manifest = {"dataset": "bench", "split": "train", "seq_len": seq_len, "row_length": seq_len + 1, "dtype": "uint16",
                "tokenizer_sha256": tokenizer_sha, "shards": shards, "rows": rows, "tokens": rows * (seq_len + 1)}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def measure(work: Path, name: str, batch: int, seq_len: int, steps: int, checkpointing: bool, compile_model: bool | None,
            vocab: int, device: str) -> dict[str, float]:
    """One preset through the trainer: warm-up steps, then ``steps`` timed ones."""
    warmup = 3
    sha = write_tokenizer(work / "tokenizer", vocab)
    shards = write_shards(work / f"shards-{seq_len}", sha, batch * (warmup + steps), seq_len, vocab)
    config = TrainConfig(phase="base", preset=name, train_data=str(shards), tokenizer=str(work / "tokenizer"),
                         out_dir=str(work / f"{name}-{batch}-{checkpointing}-{compile_model}"), batch_size=batch,
                         steps=warmup + steps, warmup_steps=1, gradient_checkpointing=checkpointing,
                         compile=compile_model, device=device, model_overrides={"max_seq_len": seq_len})
    trainer = Trainer(config)
    batches = trainer.batches()
    cuda = trainer.device.type == "cuda"
    for _ in range(warmup):
        trainer.train_step(batches)
    trainer.read_losses(across=True)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    tokens, waited, started = trainer.tokens_fed, batches.waited_s, time.perf_counter()
    for step in range(1, steps + 1):
        trainer.train_step(batches)
        if step % 10 == 0 or step == steps:
            trainer.read_losses(across=True)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens_per_second, waited = (trainer.tokens_fed - tokens) / seconds, batches.waited_s - waited
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    trainer.save_checkpoint()  # what a step waits for when it checkpoints; then the background write
    stall, started = trainer.checkpoint_s, time.perf_counter()
    trainer.writer.wait()
    batches.close()
    every = TrainConfig.checkpoint_every
    return {"tokens_per_second": tokens_per_second, "mfu": trainer.mfu(tokens_per_second) or float("nan"),
            "peak_gib": peak, "data_share": waited / seconds, "stall_s": stall,
            "write_s": time.perf_counter() - started, "checkpoint_share": stall / (stall + every * seconds / steps),
            "compiled": trainer.model is not trainer.core}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (exercises the code path)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and not args.smoke
    if cuda:  # (preset, batch, seq_len, timed steps, gradient checkpointing, compile: None = the trainer's default)
        runs = [("rosie-125m", 16, 2048, 30, False, None), ("rosie-125m", 16, 2048, 10, False, False),
                ("rosie-seed", 8, 2048, 10, True, None), ("rosie-500m", 8, 2048, 10, True, None)]
        vocab = 32_000
    else:
        runs = [("tiny", 2, 64, 3, False, None), ("tiny", 2, 64, 3, True, None)]
        vocab = 512
    lines = ["| preset | batch x seq | grad. checkpointing | compiled | tokens/s | MFU | peak memory | waiting for data "
             "| a checkpoint holds the step / writes on | checkpoint share (every 250 steps) |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        for name, batch, seq_len, steps, checkpointing, compile_model in runs:
            r = measure(Path(tmp), name, batch, seq_len, steps, checkpointing, compile_model, vocab,
                        "cuda" if cuda else "cpu")
            lines.append(f"| {name} | {batch} x {seq_len} | {'yes' if checkpointing else 'no'} | "
                         f"{'yes' if r['compiled'] else 'no'} | {r['tokens_per_second']:,.0f} | {r['mfu']:.1%} | "
                         f"{r['peak_gib']:.1f} GiB | {r['data_share']:.1%} | {r['stall_s']:.2f} s / {r['write_s']:.1f} s | "
                         f"{r['checkpoint_share']:.1%} |")
            print(lines[-1], flush=True)
    device = f"{torch.cuda.get_device_name()}, torch {torch.__version__}" if cuda else "CPU (smoke)"
    body = (f"Device: {device}. The trainer's own step (bf16 autocast, fused AdamW, chunked cross-entropy, prefetched "
            "data, background checkpoints); MFU against 989 TFLOP/s dense bf16. Command: `python bench/bench_gpu.py`."
            "\n\n" + "\n".join(lines))
    from bench.results import publish

    publish("GPU training (rosie presets)", body, args.out)


if __name__ == "__main__":
    main()
