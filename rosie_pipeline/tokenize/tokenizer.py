"""A byte-level BPE tokenizer (Hugging Face ``tokenizers``) with Rosie's special tokens.

Saved as ``tokenizer.json`` plus ``tokenizer_config.json`` in the Hugging Face convention, so
``transformers.PreTrainedTokenizerFast.from_pretrained(folder)`` loads it with the special tokens.
Byte-level means every Unicode string encodes and decodes back exactly.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from rosie_pipeline.atomic import atomic_path, read_json, write_json_atomic
from rosie_pipeline.chat_format import (CHAT_FORMATS, EMOTIONS, EOS, EVENTS, PAD, ROSIE_FORMAT, ROSIE_SYSTEM_PROMPT,
                                        SPECIAL_TOKENS, ChatFormat, chat_format_for, chat_template)

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"


@dataclass(frozen=True)
class TokenizerOptions:
    vocab_size: int = 32_000
    min_frequency: int = 2
    model_max_length: int = 2048


def build_trainer_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train_tokenizer(texts: Iterable[str], options: TokenizerOptions) -> Tokenizer:
    """Train on ``texts`` (streamed); the special tokens get the first ids, in DESIGN's order."""
    tokenizer = build_trainer_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=options.vocab_size,
        min_frequency=options.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, folder: Path, options: TokenizerOptions) -> str:
    """Write tokenizer.json and tokenizer_config.json atomically; returns the tokenizer's sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / TOKENIZER_FILE) as tmp:
        tokenizer.save(str(tmp))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": EOS,
        "pad_token": PAD,
        "bos_token": None,
        "unk_token": None,
        "additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in (EOS, PAD)],
        "model_max_length": options.model_max_length,
        "clean_up_tokenization_spaces": False,
        "rosie_emotions": list(EMOTIONS),
        "rosie_events": list(EVENTS),
        **format_settings(ROSIE_FORMAT),
        "rosie_system_prompt": ROSIE_SYSTEM_PROMPT,
    }
    write_json_atomic(folder / CONFIG_FILE, config)
    return tokenizer_sha256(folder)


def format_settings(fmt: ChatFormat) -> dict[str, object]:
    """What a tokenizer config says about its chat markup: the template, its name, the tokens that end her turn."""
    return {"chat_template": chat_template(fmt), "rosie_chat_format": fmt.name, "rosie_stop_tokens": list(fmt.stops),
            "rosie_reply_start": fmt.reply_start}


def chat_format_of(folder: Path) -> ChatFormat:
    """The chat markup the tokenizer in ``folder`` is used with (Rosie's own when its config does not say)."""
    config = read_json(folder / CONFIG_FILE) or {}
    return CHAT_FORMATS[config.get("rosie_chat_format", ROSIE_FORMAT.name)]


def use_native_chat_format(folder: Path) -> ChatFormat:
    """Switch a pretrained model's tokenizer (with Rosie's tokens added) to the markup that model was tuned on,
    when it has one Rosie knows; the config is rewritten only when that changes it."""
    fmt = chat_format_for(load_tokenizer(folder).get_vocab())
    config = read_json(folder / CONFIG_FILE) or {}
    wanted = {**config, **format_settings(fmt)}
    if wanted != config:
        write_json_atomic(folder / CONFIG_FILE, wanted)
    return fmt


def tokenizer_sha256(folder: Path) -> str:
    """The identity of a tokenizer: the hash of its tokenizer.json (shards record it)."""
    return hashlib.sha256((folder / TOKENIZER_FILE).read_bytes()).hexdigest()


def load_tokenizer(folder: Path) -> Tokenizer:
    return Tokenizer.from_file(str(folder / TOKENIZER_FILE))


def text_only(tokenizer: Tokenizer) -> Tokenizer:
    """A copy of ``tokenizer`` that reads special-token strings as ordinary characters: for documents and
    people's words, so a page or a message that contains ``<|endoftext|>`` or ``<|system|>`` is trained on
    (and answered) as the characters it is. rosie_model encodes the same way at inference."""
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.encode_special_tokens = True
    return copy


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
    ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
    missing = [token for token, i in ids.items() if i is None]
    if missing:
        raise ValueError(f"tokenizer lacks Rosie's special tokens {missing}")
    return ids  # type: ignore[return-value]


def round_trip_problems(tokenizer: Tokenizer, texts: list[str]) -> tuple[list[str], list[str]]:
    """(texts that do not decode back to themselves, cut to 80 characters; Rosie's special tokens that are not
    one id each): what a tokenizer the models are trained with must not have."""
    failures = [t[:80] for t in texts if tokenizer.decode(tokenizer.encode(t).ids, skip_special_tokens=False) != t]
    split = [t for t in SPECIAL_TOKENS if len(tokenizer.encode(t).ids) != 1]
    return failures, split


def sample_texts(texts: Iterable[tuple[str, str]], max_chars: int, keep_permille: int = 1000) -> list[str]:
    """A deterministic sample of (id, text) pairs, made in one pass in memory bounded by ``max_chars``: of the ids
    that hash under ``keep_permille``, those of smallest hash whose texts fit in ``max_chars`` (at least one), in
    the order they came. The choice depends on the ids alone, not on how large the lake is or in which order its
    sources are read (taking the first ``max_chars`` characters never reached the dialogues after a large web
    crawl); when everything fits it is everything, in order."""
    kept: list[tuple[int, int, str]] = []   # a heap of (-rank, position, text): the largest rank on top
    total = 0
    for position, (doc_id, text) in enumerate(texts):
        digest = hashlib.sha1(doc_id.encode()).hexdigest()
        if int(digest[:8], 16) % 1000 >= keep_permille:
            continue
        heapq.heappush(kept, (-int(digest[8:24], 16), position, text))
        total += len(text)
        while total > max_chars and len(kept) > 1:
            total -= len(heapq.heappop(kept)[2])
    return [text for _, _, text in sorted(kept, key=lambda entry: entry[1])]
