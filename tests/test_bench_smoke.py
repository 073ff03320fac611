"""The benchmarks' GPU code path runs on the CPU too (tiny sizes); figures come from real runs, not tests."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_code_path_runs_on_cpu():
    done = subprocess.run([sys.executable, "bench/bench_gpu.py", "--smoke"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| tiny | 2 x 64 | yes |" in done.stdout


def test_generation_benchmark_runs_and_agrees_with_transformers():
    done = subprocess.run([sys.executable, "bench/bench_generation.py", "--preset", "tiny", "--prompt", "8", "--new",
                           "8", "--repeats", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Greedy tokens identical to transformers': 100%" in done.stdout
    assert "| Rosie ReplyDecoder (dynamic int8) |" in done.stdout


def test_lora_benchmark_reports_trainable_parameters_speed_and_memory(tmp_path):
    import pytest

    pytest.importorskip("peft")
    from tests.pretrained import save_small_llama

    llama = save_small_llama(tmp_path / "llama")
    done = subprocess.run([sys.executable, "bench/bench_lora.py", "--pretrained", str(llama), "--seq-len", "16",
                           "--batch", "2", "--steps", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "MiB" in line]
    assert [row.split(" | ")[0] for row in rows] == ["| Rosie bootstrap (LoRA + Rosie's tokens, emotion head)",
                                                      "| peft LoRA, plain loop", "| full fine-tune (transformers)"]
    assert "(100.0%)" in rows[2] and "(100.0%)" not in rows[0]  # LoRA trains a fraction, the full fine-tune all
