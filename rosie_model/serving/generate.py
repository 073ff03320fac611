"""Loading a trained Rosie and decoding her replies with the KV cache.

Prompts are rendered with the chat template the tokenizer folder carries (``tokenizer_config.json``),
so inference sees exactly the format training saw; rosie_model never needs rosie_pipeline's code.

A reply is decoded in three moves: the prompt (ending in ``<|rosie|>``) is run once, filling the cache;
the emotion head reads the state there and its ``<|emotion:…|>`` token is fed in, so her words follow
the feeling her avatar shows; then tokens are sampled one at a time until another speaker's token, the
end of text, or the limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import torch
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from rosie_model.core.checkpoint import load_weights
from rosie_model.core.config import ModelConfig
from rosie_model.core.errors import ModelLoadError
from rosie_model.core.layout import ModelFolder
from rosie_model.core.protocol import RosieCore, build_model


@dataclass(frozen=True)
class SamplingOptions:
    """How tokens are picked. ``temperature`` 0 is greedy; ``seed`` makes sampling repeatable."""

    max_new_tokens: int = 64
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 0.9
    repetition_penalty: float = 1.15
    seed: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be at least 1, not {self.max_new_tokens}")
        if self.temperature < 0:
            problems.append(f"temperature must be 0 (greedy) or more, not {self.temperature}")
        if self.top_k < 0:
            problems.append(f"top_k must be 0 (off) or more, not {self.top_k}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], not {self.top_p}")
        if self.repetition_penalty <= 0:
            problems.append(f"repetition_penalty must be positive, not {self.repetition_penalty}")
        if problems:
            raise ValueError("; ".join(problems))


GREEDY = SamplingOptions(temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.0)


def sampling_defaults(folder: ModelFolder) -> SamplingOptions:
    """The sampling settings chosen for this model when it was evaluated (``sampling.json``), else the defaults."""
    chosen = folder.sampling
    if not chosen.is_file():
        return SamplingOptions()
    try:
        return SamplingOptions(**json.loads(chosen.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(f"{chosen} is not valid sampling settings ({exc}); delete it to use the defaults") from exc


#: Stands in for one piece of people's text while the chat template renders (private-use code points).
_HELD = re.compile("\ue000([0-9]+)\ue001")


def compile_template(source: str) -> jinja2.Template:
    """A model folder's chat template, compiled in the immutable sandbox: it can format strings and loop,
    but cannot reach Python objects, attributes or callables (``cycler.__init__.__globals__``…)."""
    return ImmutableSandboxedEnvironment().from_string(source)


def text_only(tokenizer: Tokenizer) -> Tokenizer:
    """A copy of ``tokenizer`` that reads special-token strings as ordinary characters."""
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.encode_special_tokens = True
    return copy


@dataclass
class LoadedRosie:
    model: RosieCore
    tokenizer: Tokenizer
    settings: dict[str, Any]
    folder: Path
    #: The weights file that was loaded (the latest phase unless one was asked for).
    weights: Path

    @cached_property
    def template(self) -> jinja2.Template:
        return compile_template(self.settings["chat_template"])

    @cached_property
    def text_tokenizer(self) -> Tokenizer:
        """The tokenizer for what people wrote: never yields a control token."""
        return text_only(self.tokenizer)

    def encode_text(self, text: str) -> list[int]:
        return self.text_tokenizer.encode(text, add_special_tokens=False).ids

    @property
    def device(self) -> torch.device:
        return self.model.tok_emb.weight.device

    @property
    def events(self) -> tuple[str, ...]:
        return tuple(self.settings.get("rosie_events", ()))

    @property
    def system_prompt(self) -> str | None:
        return self.settings.get("rosie_system_prompt")

    def token_id(self, token: str) -> int:
        found = self.tokenizer.token_to_id(token)
        if found is None:
            raise ValueError(f"the tokenizer has no {token!r}")
        return found

    @property
    def stop_ids(self) -> set[int]:
        """Tokens that end Rosie's turn: another speaker, an event, memory or the end of text."""
        names = self.settings.get("rosie_stop_tokens")  # the chat markup's own (tokenizers since the ChatML path)
        if not names:
            names = ["<|endoftext|>", "<|user|>", "<|system|>", "<|rosie|>", "<|memory|>"]
            names += [f"<|event:{e}|>" for e in self.events]
        return {i for i in (self.tokenizer.token_to_id(n) for n in names) if i is not None}

    @property
    def reply_start_ids(self) -> list[int]:
        """What follows her emotion token before her words (``<|im_start|>assistant\\n`` in ChatML; nothing in
        Rosie's own markup)."""
        return self.tokenizer.encode(self.settings.get("rosie_reply_start", ""), add_special_tokens=False).ids

    def render(self, messages: list[dict[str, Any]], memory: list[str] | None = None,
               add_generation_prompt: bool = True) -> list[int]:
        """The prompt's token ids. Contents and facts enter the template as placeholders; the template's
        own markup is encoded with its special tokens, each placeholder with :meth:`encode_text`.
        An event's content must be one of the model's events and an emotion one of its emotions."""
        held: list[str] = []

        def hold(text: str) -> str:
            held.append(str(text))
            return f"\ue000{len(held) - 1}\ue001"

        emotions = set(self.model.config.emotions)
        safe = []
        for message in messages:
            role, content = message["role"], message["content"]
            if role == "event" and content not in self.events:
                raise ValueError(f"unknown event {content!r}; the model knows {', '.join(self.events)}")
            emotion = message.get("emotion")
            safe.append({"role": role, "content": content if role == "event" else hold(content),
                         "emotion": emotion if emotion in emotions else None})
        try:
            text = self.template.render(messages=safe, memory=[hold(f) for f in memory or []],
                                        add_generation_prompt=add_generation_prompt)
        except jinja2.TemplateError as exc:  # SecurityError included: the template tried to reach Python
            raise ModelLoadError(f"the chat template of {self.folder / 'tokenizer'} cannot render this "
                                 f"conversation ({type(exc).__name__}: {exc}); use a model folder with a "
                                 "working chat template") from exc
        ids: list[int] = []
        for k, part in enumerate(_HELD.split(text)):
            if k % 2 == 0:
                ids += self.tokenizer.encode(part, add_special_tokens=False).ids
            elif int(part) < len(held):  # a template could spell a placeholder of its own; it gets nothing
                ids += self.encode_text(held[int(part)])
        return ids

    def prompt_room(self, max_new_tokens: int) -> int:
        """Tokens a prompt may take: the context less the reply, her emotion token and what follows it."""
        return self.model.config.max_seq_len - max_new_tokens - 1 - len(self.reply_start_ids)

    def text_of(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _fact_batch(self, texts: list[str]) -> torch.Tensor:
        ids = [self.encode_text(t)[: self.model.config.max_seq_len] or
               [self.model.config.eos_id] for t in texts]
        width = max(len(i) for i in ids)
        batch = torch.full((len(ids), width), self.model.config.pad_id, dtype=torch.long)
        for j, fact in enumerate(ids):
            batch[j, : len(fact)] = torch.tensor(fact)
        return batch.to(self.device)

    @torch.inference_mode()
    def encode_facts(self, facts: list[str]) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
        """The memory bank for memory attention (None when there is nothing to remember)."""
        if not facts or not self.model.config.memory_layers:
            return None, None
        return self.model.encode_memory(self._fact_batch(facts)[None])

    @torch.inference_mode()
    def embed(self, texts: list[str]) -> torch.Tensor:
        """One unit vector per text: the trunk's states averaged over its tokens (for retrieval)."""
        batch = self._fact_batch(texts)
        present = (batch != self.model.config.pad_id).unsqueeze(-1).float()
        pooled = (self.model(batch).float() * present).sum(1) / present.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(pooled, dim=-1).cpu()


def load_rosie(folder: Path, weights: str | None = None, device: str = "cpu") -> LoadedRosie:
    """A model folder (``config.json``, ``tokenizer/``, ``weights/*.safetensors``), latest phase by default;
    ``weights`` names another file of ``weights/`` (``base.safetensors``).

    Anything missing or unreadable raises :class:`ModelLoadError` naming the file and what is wrong.
    """
    layout = ModelFolder(Path(folder))
    folder = layout.root
    if not folder.is_dir():
        raise ModelLoadError(f"no model folder at {folder}")
    missing = [str(p.relative_to(folder)) for p in (layout.config, *layout.tokenizer_files) if not p.is_file()]
    if missing:
        raise ModelLoadError(f"{folder} is not a Rosie model folder: missing {', '.join(missing)}")
    chosen = folder / "weights" / weights if weights else layout.latest_weights()
    if chosen is None or not chosen.is_file():
        raise ModelLoadError(f"{folder} has no weights ({'weights/' + weights if weights else 'weights/*.safetensors'})")
    step = "config.json"
    try:
        config = ModelConfig.load(layout.config)
        step = f"weights/{chosen.name}"
        model = build_model(layout, config)
        model.load_trained_state(load_weights(chosen))
        step = "tokenizer/"
        tokenizer = Tokenizer.from_file(str(layout.tokenizer_files[0]))
        settings = json.loads(layout.tokenizer_files[1].read_text(encoding="utf-8"))
        compile_template(settings["chat_template"])
    except Exception as exc:  # safetensors, json, torch and tokenizers each raise their own kinds
        raise ModelLoadError(f"cannot load {folder / step}: {type(exc).__name__}: {str(exc)[:300]}") from exc
    model.to(device).eval()
    return LoadedRosie(model, tokenizer, settings, folder, chosen)


class ReplyDecoder:
    """Rosie's next turn, one token at a time (iterate it). ``emotion`` is known as soon as it is made;
    ``hit_limit`` says whether the turn was cut by ``max_new_tokens`` rather than ended by her."""

    def __init__(self, rosie: LoadedRosie, prompt: list[int], options: SamplingOptions = GREEDY,
                 memory: list[str] | None = None, persona: int = 0, stops: set[int] | None = None) -> None:
        self.rosie, self.options = rosie, options
        self.stops = rosie.stop_ids if stops is None else stops
        model, device = rosie.model, rosie.device
        limit = model.config.max_seq_len
        self.after_emotion = rosie.reply_start_ids
        room = rosie.prompt_room(options.max_new_tokens)
        if room < 1:
            raise ValueError(f"max_new_tokens {options.max_new_tokens} leaves no room for a prompt in the "
                             f"model's context of {limit}")
        self.prompt = prompt[-room:]
        self.generator = torch.Generator(device=device).manual_seed(options.seed) if options.seed is not None else None
        self.cache = model.new_cache(1, len(self.prompt) + 1 + len(self.after_emotion) + options.max_new_tokens, device,
                                     model.tok_emb.weight.dtype)
        self.bank, self.bank_mask = rosie.encode_facts(memory or [])
        self.persona = torch.tensor([persona], device=device)
        self.hit_limit = False
        with torch.inference_mode():
            hidden = self._forward(self.prompt)
            self.prompt_state = hidden[:, -1:]
            turn = torch.zeros(1, hidden.shape[1], dtype=torch.bool, device=device)
            turn[0, -1] = True  # her turn starts after the prompt: the emotion head reads there
            scores = torch.softmax(model.emotion_logits(hidden, turn).float()[0], dim=-1)
        #: How likely the emotion head finds each of her emotions here, most likely first.
        self.emotion_scores = sorted(zip(model.config.emotions, scores.tolist()), key=lambda pair: -pair[1])
        self.emotion = self.emotion_scores[0][0]
        self.emotion_id = rosie.tokenizer.token_to_id(f"<|emotion:{self.emotion}|>")

    def _forward(self, ids: list[int]) -> torch.Tensor:
        return self.rosie.model(torch.tensor([ids], device=self.rosie.device), persona=self.persona,
                                memory=self.bank, memory_mask=self.bank_mask, cache=self.cache)

    def __iter__(self) -> Iterator[int]:
        model, options = self.rosie.model, self.options
        produced: list[int] = []
        with torch.inference_mode():
            # a tokenizer without emotion tokens (an older model) just goes on from <|rosie|>
            hidden = (self._forward([self.emotion_id, *self.after_emotion]) if self.emotion_id is not None
                      else self.prompt_state)
            for step in range(options.max_new_tokens):
                logits = model.lm_logits(hidden[:, -1]).float()[0]
                token = pick_token(logits, produced, options, self.generator)
                if token in self.stops:
                    return
                produced.append(token)
                yield token
                if step + 1 < options.max_new_tokens:
                    hidden = self._forward([token])
        self.hit_limit = True


def pick_token(logits: torch.Tensor, produced: list[int], options: SamplingOptions,
               generator: torch.Generator | None) -> int:
    """The next token from one row of logits: repetition penalty on what this reply already said (as
    CTRL defines it), then greedy, or temperature, top-k and top-p sampling."""
    if options.repetition_penalty != 1.0 and produced:
        seen = torch.tensor(sorted(set(produced)), device=logits.device)
        scores = logits[seen]
        logits[seen] = torch.where(scores > 0, scores / options.repetition_penalty, scores * options.repetition_penalty)
    if options.temperature <= 0:
        return int(torch.argmax(logits))
    logits = logits / options.temperature
    if options.top_k > 0:  # the k best, already in order: top-p needs no sort of the whole vocabulary
        ordered, order = torch.topk(logits, min(options.top_k, logits.numel()))
        ordered = torch.softmax(ordered, dim=-1)
    elif options.top_p < 1.0:
        ordered, order = torch.sort(torch.softmax(logits, dim=-1), descending=True)
    else:
        return int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator))
    if options.top_p < 1.0:
        keep = torch.cumsum(ordered, 0) - ordered < options.top_p
        ordered, order = ordered[keep], order[keep]
    probs = torch.zeros_like(logits).scatter(0, order, ordered / ordered.sum())
    return int(torch.multinomial(probs, 1, generator=generator))


def generate(rosie: LoadedRosie, prompt: list[int], options: SamplingOptions = GREEDY,
             memory: list[str] | None = None, persona: int = 0) -> tuple[list[int], str]:
    """Rosie's whole next turn: (token ids without the closing stop token, her emotion)."""
    decoder = ReplyDecoder(rosie, prompt, options, memory, persona)
    return list(decoder), decoder.emotion
