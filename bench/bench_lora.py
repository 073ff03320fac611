"""The bootstrap path's LoRA fine-tune on the CPU: trainable parameters, tokens/s and peak memory.

    python bench/bench_lora.py [--pretrained smollm2|FOLDER|FILE.gguf] [--seq-len 256 --batch 4 --steps 4
                                --lora-r 16] [--out bench/RESULTS.md]

Three runs of the same pretrained model on the same random token batches, each in its own process so its
peak resident memory is its own:

* Rosie: ``BootstrapRosie`` (peft LoRA on the attention projections, Rosie's token rows, emotion head and
  personas) trained through the engine's own loss, parameter groups and optimizer;
* peft: the plain recipe a user would write (``AutoModelForCausalLM`` + ``get_peft_model`` with the same
  LoRA settings, ``labels=`` loss, AdamW);
* full fine-tune: every weight of the same model trains (what LoRA saves).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(args: argparse.Namespace) -> tuple[Any, Any, int]:
    """(model, loss of a (batch, seq+1) id tensor, vocabulary the batches draw from) for ``args.side``."""
    import torch

    from rosie_model.core.bootstrap import BootstrapRosie, BootstrapSettings, pretrained_folder

    if args.side == "rosie":
        from rosie_model.training.config import TrainConfig
        from rosie_model.training.trainer import compute_loss, select_trainable

        settings = BootstrapSettings(args.pretrained, lora_r=args.lora_r, lora_alpha=2 * args.lora_r)
        model = BootstrapRosie(settings, Path(args.tokenizer), args.seq_len)
        select_trainable(model, model.phase_trains("personality"))
        config = TrainConfig(phase="personality", train_data="-", tokenizer="-", approach="bootstrap")

        def loss(ids: torch.Tensor) -> torch.Tensor:
            return compute_loss(model, model, {"tokens": ids}, config, torch.device("cpu"))[0]

        return model, loss, model.config.vocab_size

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(pretrained_folder(args.pretrained), dtype=torch.float32)
    if args.side == "peft":
        model = get_peft_model(model, LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.1,
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))

    def hf_loss(ids: torch.Tensor) -> torch.Tensor:
        return model(input_ids=ids, labels=ids).loss

    return model, hf_loss, model.config.vocab_size


def run_side(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from rosie_model.training.config import TrainConfig
    from rosie_model.training.trainer import build_optimizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, loss_fn, vocab = build(args)
    model.train()
    optimizer = build_optimizer(model, TrainConfig(train_data="-", tokenizer="-", lr=1e-4), torch.device("cpu"))
    data = torch.randint(0, min(vocab, args.draw_vocab), (args.steps + 1, args.batch, args.seq_len + 1),
                         generator=torch.Generator().manual_seed(1))

    def step(i: int) -> float:
        loss = loss_fn(data[i])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    step(0)  # warm-up
    start = time.perf_counter()
    for i in range(1, args.steps + 1):
        step(i)
    seconds = time.perf_counter() - start
    return {"tokens_per_second": args.steps * args.batch * args.seq_len / seconds,
            "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "parameters": sum(p.numel() for p in model.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrained", default="smollm2", help="Hugging Face folder, .gguf file or smollm2")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--draw-vocab", type=int, default=8000, help="batches draw token ids below this")
    parser.add_argument("--sides", default="rosie,peft,full")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from rosie_model.core.bootstrap import resolve_pretrained

    args.pretrained = resolve_pretrained(args.pretrained)
    if args.side:
        print(json.dumps(run_side(args)))
        return
    from bench.corpus import small_rosie_tokenizer
    from rosie_model.core.bootstrap import BootstrapSettings, prepare_tokenizer

    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = prepare_tokenizer(BootstrapSettings(args.pretrained), small_rosie_tokenizer(Path(scratch) / "rosie"),
                                      Path(scratch) / "bootstrap")
        forwarded = ["--pretrained", args.pretrained, "--seq-len", str(args.seq_len), "--batch", str(args.batch),
                     "--steps", str(args.steps), "--lora-r", str(args.lora_r), "--threads", str(args.threads),
                     "--draw-vocab", str(args.draw_vocab), "--tokenizer", str(tokenizer)]
        results = {}
        for name in args.sides.split(","):
            done = subprocess.run([sys.executable, __file__, "--side", name, *forwarded], capture_output=True,
                                  text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if done.returncode:
                raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    names = {"rosie": "Rosie bootstrap (LoRA + Rosie's tokens, emotion head)", "peft": "peft LoRA, plain loop",
             "full": "full fine-tune (transformers)"}
    peer = results.get("peft")
    header = (f"Pretrained: `{Path(args.pretrained).name}` ({next(iter(results.values()))['parameters'] / 1e6:.1f}M "
              f"parameters), LoRA r={args.lora_r} alpha={2 * args.lora_r} on q/k/v/o, batch {args.batch} x "
              f"{args.seq_len} tokens, float32, {args.threads} threads on {os.cpu_count()} cores, {platform.machine()}; "
              f"{args.steps} timed AdamW steps after a warm-up, each run in its own process. "
              f"Command: `python bench/bench_lora.py`.")
    table = ["| run | trainable parameters | tokens/s | peak memory | tokens/s vs peft |",
             "| --- | ---: | ---: | ---: | ---: |"]
    table += [f"| {names[name]} | {r['trainable'] / 1e6:.2f}M ({r['trainable'] / r['parameters']:.1%}) | "
              f"{r['tokens_per_second']:,.0f} | {r['peak_bytes'] / 2**20:,.0f} MiB | "
              f"{r['tokens_per_second'] / peer['tokens_per_second']:.2f}x |" if peer else
              f"| {names[name]} | {r['trainable'] / 1e6:.2f}M | {r['tokens_per_second']:,.0f} | "
              f"{r['peak_bytes'] / 2**20:,.0f} MiB | - |" for name, r in results.items()]
    body = header + "\n\n" + "\n".join(table)
    from bench.results import publish

    publish("LoRA fine-tune, CPU (bootstrap path)", body, args.out)


if __name__ == "__main__":
    main()
