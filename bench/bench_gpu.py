"""GPU figures for the larger presets: tokens/s and MFU for rosie-125m in bf16, and peak memory for
rosie-seed and rosie-500m at batch 4-8 x 2048 with gradient checkpointing (target: fits 12 GB).

    python bench/bench_gpu.py [--out bench/RESULTS.md]      # on a CUDA machine
    python bench/bench_gpu.py --smoke                       # the same code path, tiny, on the CPU

Uses the training engine's own pieces (model, loss, fused AdamW, bf16 autocast, optional compile).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from rosie_model.core.config import preset  # noqa: E402
from rosie_model.core.model import RosieTransformer  # noqa: E402
from rosie_model.training.trainer import PEAK_FLOPS  # noqa: E402


def measure(name: str, batch: int, seq_len: int, steps: int, checkpointing: bool, compile_model: bool,
            device: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    config = preset(name, max_seq_len=seq_len)
    model = RosieTransformer(config).to(device)
    model.gradient_checkpointing = checkpointing
    forward = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    data = torch.randint(0, config.vocab_size, (batch, seq_len + 1), device=device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            hidden = forward(data[:, :-1])
            logits = model.lm_logits(hidden).float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), data[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    tokens_per_second = steps * batch * seq_len / (time.perf_counter() - start)
    flops_per_token = 6 * model.num_parameters() + 12 * config.n_layers * config.d_model * seq_len
    peak = next((v for k, v in PEAK_FLOPS.items() if device.type == "cuda" and k in torch.cuda.get_device_name()), None)
    return {"tokens_per_second": tokens_per_second, "mfu": flops_per_token * tokens_per_second / peak if peak else float("nan"),
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (exercises the code path)")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if args.smoke:
        runs = [("tiny", 2, 64, 2, False), ("tiny", 2, 64, 2, True)]
    else:
        runs = [("rosie-125m", 16, 2048, 20, False), ("rosie-seed", 8, 2048, 5, True), ("rosie-500m", 4, 2048, 5, True)]
    lines = ["| preset | batch x seq | grad. checkpointing | tokens/s | MFU | peak memory |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for name, batch, seq_len, steps, checkpointing in runs:
        result = measure(name, batch, seq_len, steps, checkpointing, args.compile, device)
        lines.append(f"| {name} | {batch} x {seq_len} | {'yes' if checkpointing else 'no'} | "
                     f"{result['tokens_per_second']:,.0f} | {result['mfu']:.1%} | {result['peak_gib']:.1f} GiB |")
        print(lines[-1], flush=True)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke)"
    body = f"Device: {name}; bf16 autocast, fused AdamW. Command: `python bench/bench_gpu.py`.\n\n" + "\n".join(lines)
    print(body)
    if args.out:
        from bench.results import write_section

        write_section(args.out, "GPU training (rosie presets)", body)


if __name__ == "__main__":
    main()
