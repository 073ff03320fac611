"""Rosie's GGUF export run by llama.cpp itself: the same greedy replies as Rosie's own decoder?

Exports SOURCE (a model folder or ``models:/rosie@champion``) to a Hugging Face folder and a GGUF, then for
each prompt renders the conversation with Rosie's renderer, lets her decoder pick the emotion and reply
greedily, and gives llama.cpp's ``llama-simple`` (greedy, stops at the GGUF's end-of-generation tokens) the
same prompt with that emotion token. Prints each pair and how many replies are identical. llama.cpp is not a
dependency: build ``llama-simple`` from its source (the ``llama-cpp-python`` sdist vendors it) and pass its
path::

    python bench/gguf_llama_cpp.py --llama-simple PATH/llama-simple --source models:/rosie@champion [--quant q8_0]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

PROMPTS = ["Hi! What's your name?", "What is the capital of France?", "How many legs does a spider have?",
           "My cat died today.", "I got the job!!", "Tell me a joke", "What colour is the sky?", "Are you ChatGPT?"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-simple", type=Path, required=True)
    parser.add_argument("--source", default="models:/rosie@champion")
    parser.add_argument("--quant", default="f16", choices=["f16", "q8_0"])
    parser.add_argument("--new", type=int, default=32)
    args = parser.parse_args()

    from rosie_model.export.gguf import export_gguf
    from rosie_model.export.hf import export_hf
    from rosie_model.serving.generate import ReplyDecoder, SamplingOptions, load_rosie

    scratch = Path(tempfile.mkdtemp(prefix="rosie-gguf-"))
    folder = export_hf(args.source, scratch / "hf")
    gguf = export_gguf(folder, scratch / f"rosie-{args.quant}.gguf", args.quant)
    from rosie_model.core.locate import resolve_model

    rosie = load_rosie(resolve_model(args.source).folder)
    greedy = SamplingOptions(max_new_tokens=args.new, temperature=0, repetition_penalty=1.0)
    same = 0
    for text in PROMPTS:
        ids = rosie.render([{"role": "system", "content": rosie.system_prompt}, {"role": "user", "content": text}])
        decoder = ReplyDecoder(rosie, ids, greedy)
        ours = rosie.text_of(list(decoder)).strip()
        prompt = rosie.tokenizer.decode(ids + [decoder.emotion_id, *rosie.reply_start_ids], skip_special_tokens=False)
        done = subprocess.run([str(args.llama_simple), "-m", str(gguf), "-n", str(args.new), prompt],
                              capture_output=True, text=True, timeout=300, check=True)
        theirs = done.stdout.removeprefix(prompt).strip()
        same += ours == theirs
        print(f"{'same' if ours == theirs else 'DIFF'}  {text!r}\n      rosie:     {ours!r}\n      llama.cpp: {theirs!r}")
    print(f"{same}/{len(PROMPTS)} replies identical ({args.quant}, {gguf.stat().st_size / 2**20:.1f} MiB, "
          f"source {args.source})")


if __name__ == "__main__":
    main()
