"""Training throughput and peak memory: Rosie's trunk against transformers' LlamaForCausalLM.

    python bench/bench_training.py [--layers 8 --d-model 512 --heads 8 --d-ff 1408 --vocab 8000
                                    --seq-len 256 --batch 8 --steps 8] [--out bench/RESULTS-training.md]

Same dimensions, same data, same optimizer (AdamW), float32 on the CPU (bf16 autocast on CUDA); each
side runs in its own process so its peak resident memory is its own. Reports tokens/s of full training
steps (forward, backward, optimizer) and the ratio; ``--compile`` adds Rosie under torch.compile (the
training engine's ``compile`` setting), compiled during the warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(side: str, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import torch

    if side.startswith("rosie"):
        from rosie_model.core.config import ModelConfig
        from rosie_model.core.model import RosieTransformer

        model = RosieTransformer(ModelConfig(vocab_size=args.vocab, n_layers=args.layers, d_model=args.d_model,
                                  n_heads=args.heads, d_ff=args.d_ff, max_seq_len=args.seq_len, memory_layers=()))
        model.gradient_checkpointing = args.checkpointing
        forward = torch.compile(model) if side == "rosie-compiled" else model  # the engine's `compile` setting

        def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            logits = model.lm_logits(forward(x))
            return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(vocab_size=args.vocab, hidden_size=args.d_model, intermediate_size=args.d_ff,
                             num_hidden_layers=args.layers, num_attention_heads=args.heads,
                             max_position_embeddings=args.seq_len, tie_word_embeddings=True, attn_implementation="sdpa")
        model = LlamaForCausalLM(config)
        if args.checkpointing:
            model.gradient_checkpointing_enable()

        def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            logits = model(input_ids=x).logits
            return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
    return model, loss_fn


def run_side(side: str, args: argparse.Namespace) -> dict[str, float]:
    import torch

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, loss_fn = build(side, args)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    data = torch.randint(0, args.vocab, (args.steps + 2, args.batch, args.seq_len + 1), device=device)
    dtype = torch.bfloat16 if device.type == "cuda" or args.dtype == "bfloat16" else torch.float32

    def step(i: int) -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = loss_fn(data[i, :, :-1], data[i, :, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for i in range(2):  # warm-up
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for i in range(2, args.steps + 2):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"tokens_per_second": args.steps * args.batch * args.seq_len / seconds, "peak_bytes": peak,
            "parameters": sum(p.numel() for p in model.parameters()), "device": str(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--d-ff", type=int, default=1408)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true", help="add a row for Rosie under torch.compile")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="autocast dtype on the CPU (CUDA always uses bf16)")
    parser.add_argument("--side", choices=["rosie", "rosie-compiled", "hf"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args)))
        return
    passthrough = [a for a in sys.argv[1:] if a not in ("--out", str(args.out), "--compile")]
    results = {}
    sides = ("rosie", "rosie-compiled", "hf") if args.compile else ("rosie", "hf")
    for side in sides:
        done = subprocess.run([sys.executable, __file__, "--side", side, *passthrough], capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
        results[side] = json.loads(done.stdout.strip().splitlines()[-1])
    rosie, hf = results["rosie"], results["hf"]
    header = (f"Dimensions: {args.layers} layers, d_model {args.d_model}, {args.heads} heads, d_ff {args.d_ff}, "
              f"vocab {args.vocab}, batch {args.batch} x {args.seq_len} tokens, {rosie['parameters'] / 1e6:.1f}M "
              f"parameters; device {rosie['device']}, {'bf16 autocast' if rosie['device'] != 'cpu' else args.dtype}, {os.cpu_count()} cores, {platform.machine()}; "
              f"{args.steps} timed AdamW steps after 2 warm-up (compilation happens there). "
              f"Command: `python bench/bench_training.py{' --compile' if args.compile else ''}`.")
    names = {"rosie": "Rosie (rosie_model)", "rosie-compiled": "Rosie, `compile: true` (torch.compile)",
             "hf": "transformers LlamaForCausalLM"}
    table = "\n".join(["| model | tokens/s | peak memory | tokens/s vs transformers |", "| --- | ---: | ---: | ---: |"] + [
        f"| {names[side]} | {r['tokens_per_second']:,.0f} | {r['peak_bytes'] / 2**20:,.0f} MiB | "
        f"**{r['tokens_per_second'] / hf['tokens_per_second']:.2f}x** |" for side, r in results.items()])
    print(header)
    print(table)
    if args.out:
        sys.path.insert(0, str(ROOT))
        from bench.results import write_section

        write_section(args.out, f"Training throughput ({args.dtype}, CPU)" if rosie["device"] == "cpu"
                      else "Training throughput (GPU)", f"{header}\n\n{table}")


if __name__ == "__main__":
    main()
