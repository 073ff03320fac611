"""Serving under load: N concurrent streaming clients against a live ``rosie serve`` on 127.0.0.1, against one
client alone, and against the same requests answered one after another by ``transformers``' ``generate`` on
the same weights (exported to a Hugging Face Llama): what a one-model server without interleaving gives; and,
where transformers has its ``transformers serve`` command, against that server with the same clients.

    python bench/bench_serve.py [--model DIR | --preset tiny] [--clients 4] [--requests 2] [--new 32]
                                [--threads 2] [--out bench/RESULTS.md]

Every request arrives at once (t = 0 for all of them) and asks for ``--new`` tokens, greedy. First-token
latency is arrival to the first streamed word (Rosie's includes her emotion head, which streams first);
tokens/s per stream is a stream's tokens after its first over the time they took; total tokens/s is all
tokens over the wall time. Both stop at Rosie's stop tokens (another speaker, end of text) or at ``--new``:
Rosie's tokens are counted from ``usage``, transformers' from its output. Loopback only, bounded sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MESSAGE = "Hi Rosie! Tell me something about your day on the desktop, please."


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, runs: list[dict[str, float]], wall: float) -> dict[str, Any]:
    """One table row: first-token p50/p95 (ms), median tokens/s per stream, total tokens/s."""
    firsts = [r["first"] * 1000 for r in runs]
    streams = [(r["tokens"] - 1) / (r["end"] - r["first"]) for r in runs if r["tokens"] > 1 and r["end"] > r["first"]]
    return {"name": name, "requests": len(runs), "p50": percentile(firsts, 0.5), "p95": percentile(firsts, 0.95),
            "stream": statistics.median(streams) if streams else 0.0,
            "total": sum(r["tokens"] for r in runs) / wall}


def stream_once(base: str, new: int, start: float, model: str = "rosie") -> dict[str, float]:
    import httpx

    body = {"model": model, "stream": True, "max_tokens": new, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": MESSAGE}]}
    first, tokens = None, 0
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk["choices"]:
                if first is None and (choice.get("delta") or {}).get("content"):
                    first = time.perf_counter() - start
    end = time.perf_counter() - start
    return {"first": end if first is None else first, "end": end, "tokens": tokens}


def load_server(base: str, clients: int, requests: int, new: int, model: str = "rosie") -> tuple[list[dict[str, float]], float]:
    """``clients`` threads, each sending ``requests`` streaming requests back to back to an OpenAI-compatible
    server; all start together."""
    runs: list[dict[str, float]] = []
    starts: list[float] = []
    lock = threading.Lock()
    gate = threading.Barrier(clients, action=lambda: starts.append(time.perf_counter()))  # t = 0, once for all

    def client() -> None:
        gate.wait()
        for _ in range(requests):
            run = stream_once(base, new, starts[0], model)
            with lock:
                runs.append(run)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return runs, time.perf_counter() - starts[0]


def sequential_generate(model_dir: Path, scratch: Path, count: int, new: int, threads: int) -> tuple[list[dict], float]:
    """``count`` requests all arriving at t = 0, answered one after another by ``generate`` (greedy), stopping
    where Rosie's decoder stops (her stop tokens) or at ``new`` tokens, so both sides produce replies of the
    same kind: total tokens/s compares like with like."""
    import torch
    from transformers import LlamaForCausalLM

    from bench.bench_generation import first_token_clock
    from rosie_model.export.hf import export_hf
    from rosie_model.serving.generate import load_rosie

    torch.set_num_threads(threads)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    hf_dir = scratch / "hf"
    export_hf(model_dir, hf_dir)  # the weights Rosie loads, persona 0 folded in
    model = LlamaForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    rosie = load_rosie(model_dir)
    prompt = torch.tensor([rosie.render([{"role": "user", "content": MESSAGE}])])

    with torch.inference_mode():
        model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=2, do_sample=False, pad_token_id=1)
    runs, start = [], time.perf_counter()
    for _ in range(count):
        streamer = first_token_clock()
        with torch.inference_mode():
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new, do_sample=False,
                                 streamer=streamer, pad_token_id=1, eos_token_id=sorted(rosie.stop_ids))
        runs.append({"first": streamer.at - start, "end": time.perf_counter() - start,
                     "tokens": out.shape[1] - prompt.shape[1]})
    return runs, time.perf_counter() - start


def transformers_serve(hf_dir: Path, port: int, args: argparse.Namespace) -> subprocess.Popen | None:
    """``transformers serve`` (the peer's own OpenAI-compatible server) on the exported folder, or None where the
    command is missing. Its generation settings are the folder's: greedy, Rosie's stop tokens, her repetition
    penalty."""
    command = Path(sys.executable).with_name("transformers")
    if not command.exists():
        return None
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    return subprocess.Popen([str(command), "serve", str(hf_dir), "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def serve(model_dir: Path, home: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    env = {**os.environ, "ROSIE_HOME": str(home), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    return subprocess.Popen([sys.executable, "-m", "rosie_model", "serve", "--model", str(model_dir), "--port",
                             str(port), "--temperature", "0", "--seed", "0", "--max-tokens", str(args.new),
                             "--max-waiting", str(args.clients * 2 + 2)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="a trained model folder (default: the preset, random weights)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=2, help="per client, back to back")
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=32, help=argparse.SUPPRESS)  # make_model_dir's context size
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or not 1 <= args.requests <= 16:
        raise SystemExit("keep it bounded: --clients 1..64, --requests 1..16")
    import signal

    from bench.bench_generation import make_model_dir
    from tests.servers import free_port, wait_for

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = make_model_dir(args, Path(scratch) / "model")
        port = free_port()
        server = serve(model_dir, Path(scratch) / "home", port, args)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(f"{base}/health", 300)
            stream_once(base, 4, time.perf_counter())  # warm-up
            rows = [summary("rosie serve, 1 client", *load_server(base, 1, args.requests, args.new)),
                    summary(f"rosie serve, {args.clients} concurrent clients",
                            *load_server(base, args.clients, args.requests, args.new))]
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        rows.append(summary(f"transformers generate, {args.clients * args.requests} requests one after another",
                            *sequential_generate(model_dir, Path(scratch), args.clients * args.requests, args.new,
                                                 args.threads)))
        hf_dir, port = Path(scratch) / "hf", free_port()   # exported by sequential_generate
        peer = transformers_serve(hf_dir, port, args)
        if peer is not None:
            base, name = f"http://127.0.0.1:{port}", str(hf_dir)
            try:
                wait_for(f"{base}/health", 300)
                stream_once(base, 4, time.perf_counter(), name)  # warm-up
                rows.append(summary(f"transformers serve, {args.clients} concurrent clients",
                                    *load_server(base, args.clients, args.requests, args.new, name)))
            finally:
                os.killpg(peer.pid, signal.SIGTERM)
                peer.wait(timeout=60)
    table = ["| server | requests | first token p50 (ms) | p95 (ms) | tokens/s per stream | tokens/s total |",
             "|---|---:|---:|---:|---:|---:|"]
    table += [f"| {r['name']} | {r['requests']} | {r['p50']:.0f} | {r['p95']:.0f} | {r['stream']:.1f} | {r['total']:.1f} |"
              for r in rows]
    many, peer = rows[1], rows[2]
    served = next((r for r in rows if r["name"].startswith("transformers serve")), None)
    body = "\n".join([
        f"`python bench/bench_serve.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        f"({'--model ' + args.model if args.model else 'preset ' + args.preset + ', random weights'}; "
        f"{args.new} new tokens, greedy, float32; {platform.machine()}, {os.cpu_count()} cores, {args.threads} threads)",
        "", *table, "",
        f"With {args.clients} clients at once: first-token p95 {many['p95']:.0f} ms vs {peer['p95']:.0f} ms for the "
        f"sequential generate queue ({peer['p95'] / max(many['p95'], 1e-9):.2f}x), total throughput "
        f"{many['total'] / max(peer['total'], 1e-9):.2f}x its. Per-stream tokens/s of a Rosie stream counts from its "
        "first word; she holds back the last few tokens until a reply ends, so short replies read high.",
        *([f"Against `transformers serve` (its OpenAI-compatible server, same clients, the exported weights): first-token "
           f"p95 {served['p95'] / max(many['p95'], 1e-9):.2f}x better, total throughput "
           f"{many['total'] / max(served['total'], 1e-9):.2f}x its. Each side streams its own greedy reply (Rosie's "
           "starts from her emotion head's choice), both stopping at her stop tokens."] if served else []),
    ])
    from bench.results import publish

    publish("Serving under load (bench_serve.py)", body, args.out)


if __name__ == "__main__":
    main()
