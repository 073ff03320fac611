"""The benchmark input: real human conversations (chitchat-dataset, fetched from PyPI at set-up)
shaped into web-like documents, plus degraded copies that the quality rules should drop and edited
copies that dedup should catch. Deterministic for a given seed; nothing is committed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path


def conversations() -> Iterator[str]:
    import chitchat_dataset

    for _, convo in sorted(chitchat_dataset.Dataset().items()):
        lines = [" ".join(m["text"].strip() for m in turn).strip() for turn in convo["messages"]]
        yield "\n".join(line[0].upper() + line[1:] + ("" if line[-1] in ".!?" else ".") for line in lines if line)


def _degrade(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    kind = rng.randrange(6)
    if kind == 0:  # navigation boilerplate
        return "\n".join(["Home", "About us", "Contact", "Login"] * 6 + lines[:3])
    if kind == 1:  # repeated lines
        return "\n".join(lines[:2] * 8 + lines)
    if kind == 2:  # bullet lists
        return "\n".join(f"- {line[:30]}" for line in lines)
    if kind == 3:  # hashtags
        return text + " " + " ".join(f"#{w}" for w in text.split()[:60])
    if kind == 4:  # a code-like page
        return text + "\nfunction main() { return 0; }"
    return "\n".join(line.rstrip(".!?") for line in lines)  # no sentence punctuation


def documents(n: int, target_chars: int, degraded_share: float = 0.3, seed: int = 0) -> list[str]:
    """``n`` documents of about ``target_chars`` characters built from consecutive conversations."""
    rng = random.Random(seed)
    source = conversations()
    docs: list[str] = []
    while len(docs) < n:
        parts: list[str] = []
        while sum(map(len, parts)) < target_chars:
            try:
                parts.append(next(source))
            except StopIteration:
                source = conversations()
        text = "\n".join(parts)
        docs.append(_degrade(text, rng) if rng.random() < degraded_share else text)
    return docs


def with_duplicates(docs: list[str], share: float = 0.2, seed: int = 1) -> list[str]:
    """Append edited copies of ``share`` of the documents (exact copies, a changed word, a cut line)."""
    rng = random.Random(seed)
    out = list(docs)
    for text in rng.sample(docs, int(len(docs) * share)):
        words = text.split(" ")
        kind = rng.randrange(3)
        if kind == 1:
            words[rng.randrange(len(words))] = "banana"
        elif kind == 2:
            words = words[: int(len(words) * 0.95)]
        out.append(" ".join(words))
    rng.shuffle(out)
    return out


def small_rosie_tokenizer(folder: Path, vocab_size: int = 4096) -> Path:
    """Rosie's tokenizer (her special tokens and chat settings) trained on a slice of the real conversations."""
    from rosie_pipeline.dialogue.importers import chitchat_conversations
    from rosie_pipeline.tokenize.tokenizer import TokenizerOptions, sample_texts, save_tokenizer, train_tokenizer

    texts = [(str(n), "\n".join(t.text for t in c.turns)) for n, c in enumerate(chitchat_conversations(limit=2000))]
    save_tokenizer(train_tokenizer(sample_texts(texts, 10**8), TokenizerOptions(vocab_size=vocab_size)), folder,
                   TokenizerOptions())
    return folder
