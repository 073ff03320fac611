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
