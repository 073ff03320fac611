"""Generation speed on the CPU: Rosie's KV-cache decoder against transformers' ``generate`` on the same
weights (the model exported to a Hugging Face Llama), in float32 and in dynamic int8 on both sides (each row is
compared with transformers at the same precision), plus int8's perplexity change.

    python bench/bench_generation.py [--preset rosie-125m] [--model DIR] [--prompt 64 --new 64 --repeats 3]
                                     [--threads 2] [--out bench/RESULTS.md]

Both sides decode greedily from the same random prompt for exactly ``--new`` tokens (stop tokens
ignored), batch 1, float32, in their own process with ``--threads`` threads. First-token latency is
prompt in, first new token out (Rosie's includes the emotion head and her emotion token); tokens/s
counts every token after the first. Without ``--model`` the weights are the preset's random ones (speed
does not depend on their values); perplexity change needs a trained model: ``--model`` (with
``--dialogue-val``, a dialogue shard split, for the perplexity rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / ".rosie" / "models" / "rosie_model"


def make_model_dir(args: argparse.Namespace, folder: Path) -> Path:
    """The model to measure: ``--model``, or the preset with random weights and a small trained tokenizer."""
    if args.model:
        return Path(args.model)
    import torch

    sys.path.insert(0, str(ROOT))
    from bench.corpus import small_rosie_tokenizer
    from rosie_model.core.checkpoint import save_weights
    from rosie_model.core.config import preset
    from rosie_model.core.model import RosieTransformer

    small_rosie_tokenizer(folder / "tokenizer")
    config = preset(args.preset, max_seq_len=max(512, args.prompt + args.new + 8))
    torch.manual_seed(0)
    config.save(folder / "config.json")
    save_weights(RosieTransformer(config).state_dict(), folder / "weights" / "base.safetensors")
    return folder


def prompt_ids(args: argparse.Namespace, vocab: int) -> list[int]:
    import torch

    return torch.randint(100, min(vocab, 4000), (args.prompt,), generator=torch.Generator().manual_seed(1)).tolist()


def torchao_int8(model: Any) -> Any:
    """torchao's ``quantize_`` with int8 dynamic activations and int8 weights: what torch points to instead of
    ``torch.ao.quantization`` (measured here to say why Rosie stays on the latter)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    from rosie_model.serving.chat import untie_output_head

    quantize_(untie_output_head(model), Int8DynamicActivationInt8WeightConfig())
    return model


def load_side(model_dir: Path, int8: bool, weights: str | None = None, quantizer: str = "torch.ao") -> Any:
    """The model folder loaded as the chat API loads it, quantized when ``int8`` (by Rosie's ``quantize_int8``,
    or by torchao when ``quantizer`` says so)."""
    from rosie_model.serving.chat import quantize_int8
    from rosie_model.serving.generate import load_rosie

    rosie = load_rosie(model_dir, weights=weights)
    if int8:
        rosie.model = (torchao_int8 if quantizer == "torchao" else quantize_int8)(rosie.model)
    return rosie


#: Facts for the memory-bank row (what the memory store would recall), one per user detail.
FACTS = ["The user's name is Kai.", "The user's dog is called Biscuit.", "The user's favourite colour is green.",
         "The user lives in Lisbon.", "The user's sister is called Mira.", "The user works as a nurse.",
         "The user's birthday is in May.", "The user is learning the piano."]


def run_rosie(args: argparse.Namespace, model_dir: Path, int8: bool, quantizer: str = "torch.ao",
              facts: int = 0) -> dict[str, float]:
    import dataclasses

    from rosie_model.serving.generate import GREEDY, ReplyDecoder

    rosie = load_side(model_dir, int8, weights="base.safetensors", quantizer=quantizer)
    prompt = prompt_ids(args, rosie.model.config.vocab_size)
    options = dataclasses.replace(GREEDY, max_new_tokens=args.new)

    def once() -> tuple[float, float, list[int]]:
        start = time.perf_counter()
        tokens = iter(ReplyDecoder(rosie, prompt, options, memory=(FACTS * 4)[:facts], stops=set()))
        produced = [next(tokens)]
        first = time.perf_counter()
        produced += list(tokens)
        return first - start, time.perf_counter() - first, produced

    decoder = ReplyDecoder(rosie, prompt, options, stops=set())
    return {**measure(once, args), "emotion_id": decoder.emotion_id}


def first_token_clock() -> Any:
    """A ``generate`` streamer whose ``at`` is when the first new token came out (the first call is the prompt)."""
    from transformers.generation.streamers import BaseStreamer

    class FirstToken(BaseStreamer):
        def __init__(self) -> None:
            self.calls, self.at = 0, 0.0

        def put(self, value: Any) -> None:
            self.calls += 1
            if self.calls == 2:
                self.at = time.perf_counter()

        def end(self) -> None:
            pass

    return FirstToken()


def run_hf(args: argparse.Namespace, model_dir: Path, int8: bool = False) -> dict[str, float]:
    """transformers' ``generate`` on the exported weights; ``int8``: quantized as Rosie's int8 side is (PyTorch
    dynamic int8 of every Linear, the output layer included), so int8 is compared with int8."""
    import warnings

    import torch
    from transformers import LlamaForCausalLM
    from rosie_model.core.config import ModelConfig
    from rosie_model.export.hf import export_hf

    hf_dir = Path(args.scratch) / "hf"
    if not (hf_dir / "config.json").exists():
        export_hf(model_dir, hf_dir, "base")
    model = LlamaForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    if int8:
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
            warnings.simplefilter("ignore")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    # Rosie opens her turn with the emotion token her head picked; transformers gets it in the prompt,
    # so both continue the same context and greedy decoding must agree token for token
    prompt = torch.tensor([prompt_ids(args, ModelConfig.load(model_dir / "config.json").vocab_size) + [args.emotion_id]])

    def once() -> tuple[float, float, list[int]]:
        streamer = first_token_clock()
        start = time.perf_counter()
        with torch.inference_mode():
            # plain greedy, as Rosie's side: the exported generation_config carries her repetition penalty
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.new,
                                 min_new_tokens=args.new, do_sample=False, repetition_penalty=1.0,
                                 streamer=streamer, pad_token_id=1)
        end = time.perf_counter()
        return streamer.at - start, end - streamer.at, out[0, prompt.shape[1]:].tolist()

    return measure(once, args)


def measure(once: Any, args: argparse.Namespace) -> dict[str, Any]:
    once()  # warm-up
    runs = [once() for _ in range(args.repeats)]
    first = sorted(r[0] for r in runs)[len(runs) // 2]
    rest = sorted(r[1] for r in runs)[len(runs) // 2]
    return {"first_token_ms": first * 1000, "tokens_per_second": (args.new - 1) / rest, "tokens": runs[0][2]}


def perplexity(args: argparse.Namespace, model_dir: Path, int8: bool) -> float:
    from rosie_model.evaluation.evaluate import shard_metrics

    rosie = load_side(model_dir, int8)
    return shard_metrics(rosie, Path(args.dialogue_val), args.ppl_rows)["perplexity"]


def config_has_memory(model_dir: Path) -> bool:
    from rosie_model.core.config import ModelConfig

    return bool(ModelConfig.load(model_dir / "config.json").memory_layers)


def side(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    model_dir = Path(args.model_dir)
    if args.side in ("hf", "hf-int8"):
        result = run_hf(args, model_dir, int8=args.side == "hf-int8")
    elif args.side.startswith("ppl"):
        result = {"perplexity": perplexity(args, model_dir, args.side == "ppl-int8")}
    else:
        quantizer = "torchao" if args.side == "rosie-torchao" else "torch.ao"
        facts = args.facts if args.side == "rosie-facts" else 0
        result = run_rosie(args, model_dir, args.side not in ("rosie", "rosie-facts"), quantizer, facts)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="rosie-125m")
    parser.add_argument("--model", default=None, help="a trained model folder (default: the preset, random weights)")
    parser.add_argument("--dialogue-val", default=None, help="dialogue shard split for the int8 perplexity change")
    parser.add_argument("--ppl-rows", type=int, default=256)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--torchao", action="store_true",
                        help="also measure torchao's quantize_ int8 (pip install torchao first)")
    parser.add_argument("--facts", type=int, default=8, help="facts in the memory bank for the memory row (0: no row)")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    parser.add_argument("--emotion-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args)
        return
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = make_model_dir(args, Path(scratch) / "model")
        forwarded = ["--prompt", str(args.prompt), "--new", str(args.new), "--repeats", str(args.repeats),
                     "--threads", str(args.threads), "--model-dir", str(model_dir), "--scratch", scratch,
                     "--ppl-rows", str(args.ppl_rows), "--facts", str(args.facts)] + (["--dialogue-val", args.dialogue_val] if args.dialogue_val else [])

        def run(name: str, *extra: str) -> dict[str, Any]:
            done = subprocess.run([sys.executable, __file__, "--side", name, *forwarded, *extra], capture_output=True,
                                  text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if done.returncode:
                raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
            return json.loads(done.stdout.strip().splitlines()[-1])

        results = {name: run(name) for name in ("rosie", "rosie-int8", *(["rosie-torchao"] if args.torchao else []),
                                                *(["rosie-facts"] if args.facts and config_has_memory(model_dir) else []))}
        for name in ("hf", "hf-int8"):
            results[name] = run(name, "--emotion-id", str(results["rosie"]["emotion_id"]))
        ppl = {name: run(name)["perplexity"] for name in ("ppl", "ppl-int8")} if args.dialogue_val else {}
        from rosie_model.core.config import ModelConfig

        config = ModelConfig.load(model_dir / "config.json")
    rosie, hf, hf_int8, int8 = results["rosie"], results["hf"], results["hf-int8"], results["rosie-int8"]
    same = sum(a == b for a, b in zip(rosie["tokens"], hf["tokens"])) / max(1, len(hf["tokens"]))
    parameters = config.vocab_size * config.d_model + config.n_layers * (
        config.d_model * (config.n_heads + 2 * config.kv_heads) * config.head_dim
        + config.n_heads * config.head_dim * config.d_model + 3 * config.d_model * config.d_ff)
    what = f"`{args.model}` (trained)" if args.model else f"preset {args.preset}, random weights"
    header = (f"Model: {what}, {parameters / 1e6:.1f}M parameters in the Llama trunk, vocab {config.vocab_size}; "
              f"prompt {args.prompt} tokens, {args.new} new tokens, greedy, batch 1, float32 unless int8; "
              f"{args.threads} threads on {os.cpu_count()} cores, {platform.machine()}; median of {args.repeats} "
              f"after a warm-up. Greedy tokens identical to transformers': {same:.0%}. "
              f"Command: `python bench/bench_generation.py{' --model ' + args.model if args.model else ''}"
              f"{' --torchao' if args.torchao else ''}`.")
    # (row, result, the transformers row it is compared with: the same precision)
    rows = [("Rosie ReplyDecoder (fp32)", rosie, hf), ("transformers generate (fp32)", hf, hf),
            ("Rosie ReplyDecoder (dynamic int8)", int8, hf_int8), ("transformers generate (dynamic int8)", hf_int8, hf_int8)]
    if args.torchao:
        rows.append(("Rosie ReplyDecoder (torchao quantize_, int8 dynamic)", results["rosie-torchao"], hf_int8))
    if "rosie-facts" in results:  # transformers has no memory attention: its column compares to the plain prompt
        rows.append((f"Rosie ReplyDecoder (fp32, {args.facts} facts in the memory bank)", results["rosie-facts"], hf))
    table = ["| decoder | first token | tokens/s | vs transformers, same precision |", "| --- | ---: | ---: | ---: |"]
    table += [f"| {name} | {r['first_token_ms']:,.1f} ms | {r['tokens_per_second']:,.1f} | "
              f"**{r['tokens_per_second'] / peer['tokens_per_second']:.2f}x** |" for name, r, peer in rows]
    if ppl:
        change = (ppl["ppl-int8"] - ppl["ppl"]) / ppl["ppl"]
        table += ["", "| weights | dialogue perplexity |", "| --- | ---: |", f"| float32 | {ppl['ppl']:.3f} |",
                  f"| dynamic int8 | {ppl['ppl-int8']:.3f} ({change:+.2%}) |"]
    body = header + "\n\n" + "\n".join(table)
    sys.path.insert(0, str(ROOT))
    from bench.results import publish

    publish(f"Generation speed, CPU ({'trained ' + Path(args.model).name if args.model else args.preset})", body, args.out)


if __name__ == "__main__":
    main()
