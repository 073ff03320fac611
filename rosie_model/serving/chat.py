"""Talking to Rosie from Python: load a trained model, send the conversation, get her reply and emotion.

    from rosie_model.serving.chat import Rosie

    rosie = Rosie.load("models:/rosie@champion")          # or a model folder
    reply = rosie.reply([{"role": "user", "content": "Hi! My name is Sam."}], user_id="sam")
    reply.text, reply.emotion
    for piece in rosie.reply(messages, event="poke", stream=True):   # tokens as they come
        print(piece, end="", flush=True)

With a ``user_id`` she uses her long-term memory (a SQLite store under ``$ROSIE_HOME/memory``): facts
she picks up from what the user says are kept, and the entries most relevant to each new message are
read into memory attention (or, for a model without it, into a ``<|memory|>`` context block).

Errors the user can fix — an empty or oversized message, an unknown event, a missing model, an unknown
registry alias, a damaged memory store — raise :class:`ChatError` subclasses whose message says what
happened; interfaces print that message, never a traceback.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import torch

from rosie_model.core.errors import ModelLoadError, ModelNotFound, RosieError
from rosie_model.core.layout import ModelFolder, memory_db
from rosie_model.core.locate import resolve_model
from rosie_model.serving.generate import LoadedRosie, ReplyDecoder, SamplingOptions, load_rosie, sampling_defaults
from rosie_model.serving.memory_store import MemoryStore, MemoryStoreError, extract_facts

MESSAGE_ROLES = ("system", "user", "rosie", "assistant", "event")
#: Where a reply has run into someone else's turn: a tag, a new line, or a speaker label where a sentence starts
#: ("…you. User: hi", not "the user: Sam", which is her reading a memory aloud).
LEAKED_TURN = re.compile(r"<\||\n|(?:^|(?<=[.!?…] ))\s*(?:user|human|rosie|assistant)\s*:", re.IGNORECASE)
LEADING_LABEL = re.compile(r"^\s*(?:rosie|assistant)\s*:\s*", re.IGNORECASE)
SENTENCE_END = re.compile(r"[.!?…]+(?:[\s\"')\]]*[^\w\s.!?…]+)*")
#: Characters held back while streaming: a speaker label may still be forming at the end.
STREAM_HOLDBACK_CHARS = 12
#: Tokens before the limit from which text is held back, so a cut at a sentence end never takes back
#: what was already shown.
LIMIT_HOLDBACK_TOKENS = 16


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ChatError(RosieError):
    """A problem the user can fix; its message is meant to be shown as it is."""


class ChatInputError(ChatError):
    """The messages or event cannot be answered (empty, too long, unknown event or role)."""


@dataclass(frozen=True)
class Reply:
    text: str
    emotion: str
    #: The long-term memories read into this reply, and the facts learned from the user's message.
    memories: tuple[str, ...] = ()
    learned: tuple[str, ...] = ()
    tokens: int = 0
    #: True when the reply hit ``max_new_tokens`` and was cut at a sentence end.
    truncated: bool = False
    first_token_s: float = 0.0
    seconds: float = 0.0
    #: Tokens of the prompt the reply was decoded after (the conversation as it fit in the context).
    prompt_tokens: int = 0


class ReplyStream:
    """Rosie's reply as text pieces while it is decoded; ``emotion`` is known before the first piece
    and ``result`` is the whole :class:`Reply` (reading it finishes the reply); ``stop`` ends it early."""

    def __init__(self, emotion: str, pieces: Generator[str, None, None], finish: Callable[[str | None], Reply]) -> None:
        self.emotion, self._pieces, self._finish = emotion, pieces, finish
        self._result: Reply | None = None

    def __iter__(self) -> Iterator[str]:
        yield from self._pieces
        self._result = self._finish(None)

    def stop(self, text: str) -> Reply:
        """Stop decoding (a stop string was reached): the reply is ``text``, what was kept of it."""
        self._pieces.close()
        self._result = self._finish(text.strip() or "…")
        return self._result

    @property
    def result(self) -> Reply:
        if self._result is None:
            for _ in self:
                pass
        assert self._result is not None
        return self._result


def clean_reply(raw: str) -> tuple[str, bool]:
    """The reply without a leading "Rosie:" and cut where another turn leaks in; and whether it was cut."""
    text = LEADING_LABEL.sub("", raw.lstrip())
    leak = LEAKED_TURN.search(text)
    if leak:
        return text[: leak.start()].rstrip(), True
    return text, False


def cut_at_sentence_end(text: str, keep: str = "") -> str:
    """``text`` up to its last sentence end (emoji after it stay); never shorter than ``keep``, which
    was already shown. Without a sentence end the text is kept and marked as cut with "…"."""
    ends = [m.end() for m in SENTENCE_END.finditer(text) if m.end() >= len(keep.rstrip())]
    if ends:
        return text[: ends[-1]].rstrip()
    return text.rstrip() + "…"


def untie_output_head(model: torch.nn.Module) -> torch.nn.Module:
    """Rosie's own model reuses the embedding matrix as its output layer; a quantizer needs a Linear there."""
    from rosie_model.core.model import RosieTransformer as Transformer

    if isinstance(model, Transformer):
        head = torch.nn.Linear(model.config.d_model, model.config.vocab_size, bias=False)
        head.weight = torch.nn.Parameter(model.tok_emb.weight.detach().clone(), requires_grad=False)
        model.output_head = head
    return model


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 for CPU inference: linear weights stored as int8 per output channel, activations
    quantized on the fly (PyTorch's fbgemm/onednn kernels); the tied output layer gets its own int8 copy.

    This stays on ``torch.ao.quantization`` although torch points to torchao: torchao 0.18's ``quantize_``
    (int8 dynamic activations + int8 weights) decodes at about a third of its speed on these CPUs, slower
    than float32 (``python bench/bench_generation.py --torchao``, bench/RESULTS.md)."""
    import warnings

    untie_output_head(model)
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


class Rosie:
    """A trained Rosie ready to chat. Build it with :meth:`load`."""

    def __init__(self, loaded: LoadedRosie, options: SamplingOptions, memory_path: Path,
                 max_message_chars: int = 4000, memory_k: int = 4, tag: str = "", label: str = "",
                 registry_names: tuple[str, ...] = ()) -> None:
        self.loaded, self.options = loaded, options
        #: How the model was asked for (``models:/rosie@champion (version 3)``), for people to read.
        self.label = label or str(loaded.folder)
        #: The registry names she was loaded by (``rosie@champion``, ``rosie/3``), for clients to ask for.
        self.registry_names = registry_names
        self.memory_path, self.memory_k, self.max_message_chars = memory_path, memory_k, max_message_chars
        self.model_tag = tag
        self._memory: MemoryStore | None = None

    @classmethod
    def load(cls, source: str | Path, *, device: str = "auto", int8: bool = False,
             options: SamplingOptions | None = None, memory_path: Path | None = None,
             max_message_chars: int = 4000) -> Rosie:
        """``source``: a model folder, a downloaded MLflow model, or ``models:/rosie@champion``-style URI.
        ``device`` auto picks CUDA (in bf16) when there is one; ``int8`` quantizes for CPU."""
        located = resolve_model(source)
        folder = located.folder
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            loaded = load_rosie(folder, device=device)
        except ModelLoadError as exc:
            raise ModelNotFound(str(exc)) from exc
        if device.startswith("cuda"):
            loaded.model.to(torch.bfloat16)
        if int8:
            if device != "cpu":
                raise ChatError("int8 quantization is for CPU inference; use bf16 on a GPU")
            loaded.model = quantize_int8(loaded.model)
        weights = loaded.weights  # memory vectors are tagged with the weights that made them
        tag = f"{weights.resolve()}@{weights.stat().st_mtime_ns}{'+int8' if int8 else ''}"
        return cls(loaded, options or sampling_defaults(ModelFolder(folder)), memory_path or memory_db(),
                   max_message_chars, tag=tag, label=located.label, registry_names=located.registry_names)

    @property
    def events(self) -> tuple[str, ...]:
        return self.loaded.events

    @property
    def memory(self) -> MemoryStore:
        """The long-term memory store, opened on first use."""
        if self._memory is None:
            self._memory = MemoryStore(self.memory_path, lambda texts: self.loaded.embed(texts).numpy(), self.model_tag)
        return self._memory

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()
            self._memory = None

    def check_messages(self, messages: list[dict[str, Any]], event: str | None) -> list[dict[str, Any]]:
        """The conversation as template messages, with the event appended; ChatInputError if it cannot be answered."""
        checked = []
        for n, message in enumerate(messages):
            role, content = message.get("role"), message.get("content")
            if role not in MESSAGE_ROLES:
                raise ChatInputError(f"message {n + 1} has role {role!r}; roles are {', '.join(MESSAGE_ROLES)}")
            if not isinstance(content, str):
                raise ChatInputError(f"message {n + 1} has no text content")
            if not content.isascii() and not _encodable(content):
                raise ChatInputError(f"message {n + 1} is not valid Unicode text (it holds a lone surrogate)")
            if role == "event":
                self._check_event(content)
            elif role == "user":
                if not content.strip():
                    raise ChatInputError("the message is empty: say something to Rosie")
                if len(content) > self.max_message_chars:
                    raise ChatInputError(f"the message has {len(content):,} characters; Rosie reads at most "
                                         f"{self.max_message_chars:,} per message")
            checked.append({"role": "rosie" if role == "assistant" else role, "content": content,
                            "emotion": message.get("emotion")})
        if event is not None:
            checked.append({"role": "event", "content": self._check_event(event)})
        if not checked or checked[-1]["role"] not in ("user", "event"):
            raise ChatInputError("there is nothing to reply to: the last message must be the user's or an event")
        return checked

    def _check_event(self, event: str) -> str:
        if event not in self.events:
            raise ChatInputError(f"unknown event {event!r}; Rosie knows: {', '.join(self.events)}")
        return event

    def prompt(self, messages: list[dict[str, Any]], memories: list[str], max_new_tokens: int) -> list[int]:
        """The rendered prompt, without the fewest oldest turns that leave room for the reply (the newest turn
        always stays; the decoder cuts a prompt that is still too long from the front)."""
        system = [m for m in messages if m["role"] == "system"]
        if not system and self.loaded.system_prompt:
            system = [{"role": "system", "content": self.loaded.system_prompt}]
        turns = [m for m in messages if m["role"] != "system"]
        in_context = memories if not self.loaded.model.config.memory_layers else None
        room = self.loaded.prompt_room(max_new_tokens)
        try:
            ids = self.loaded.render(system + turns, in_context)
            if len(ids) <= room or len(turns) == 1:
                return ids
            # the fewest oldest turns to drop (the newest always stays), found by bisection: a long
            # conversation costs a handful of renders, not one per dropped turn
            fits: dict[int, list[int]] = {}
            low, high = 1, len(turns) - 1
            while low <= high:
                middle = (low + high) // 2
                candidate = self.loaded.render(system + turns[middle:], in_context)
                if len(candidate) <= room:
                    fits[middle], high = candidate, middle - 1
                else:
                    low = middle + 1
            return fits.get(low) or self.loaded.render(system + turns[-1:], in_context)
        except ModelLoadError as exc:  # the folder's chat template refused (or tried to reach Python)
            raise ChatError(str(exc)) from exc

    def _use_memory(self, user_id: str, newest: dict[str, Any], remember: bool) -> tuple[list[str], list[str]]:
        """(facts learned from the newest message, the memories most relevant to it)."""
        try:
            learned = []
            if newest["role"] == "user" and remember:
                learned = [m.text for m in self.memory.remember_facts(user_id, extract_facts(newest["content"]))]
            return learned, [m.text for m in self.memory.recall(user_id, newest["content"], self.memory_k)]
        except MemoryStoreError as exc:
            raise ChatError(str(exc)) from exc

    @overload
    def reply(self, messages: list[dict[str, Any]], event: str | None = ..., user_id: str | None = ...,
              stream: Literal[False] = ..., options: SamplingOptions | None = ..., remember: bool = ...,
              persona: int = ...) -> Reply: ...

    @overload
    def reply(self, messages: list[dict[str, Any]], event: str | None = ..., user_id: str | None = ...,
              *, stream: Literal[True], options: SamplingOptions | None = ..., remember: bool = ...,
              persona: int = ...) -> ReplyStream: ...

    def reply(self, messages: list[dict[str, Any]], event: str | None = None, user_id: str | None = None,
              stream: bool = False, options: SamplingOptions | None = None, remember: bool = True,
              persona: int = 0) -> Reply | ReplyStream:
        """Rosie's answer to the conversation (``messages`` of role/content; roles user, rosie, system,
        event), after an optional desktop ``event``. With ``user_id`` she remembers and recalls (``remember``
        False: recalls only, for a second alternative to the same message); with ``stream`` the reply comes
        as a :class:`ReplyStream` of text pieces. ``persona`` picks one of the model's persona embeddings
        (0 is Rosie)."""
        started = time.perf_counter()
        checked = self.check_messages(messages, event)
        if not 0 <= persona < self.loaded.model.config.n_personas:
            raise ChatInputError(f"persona {persona} is not one of this model's 0-{self.loaded.model.config.n_personas - 1}")
        options = options or self.options
        context = self.loaded.model.config.max_seq_len
        if options.max_new_tokens > context // 2:  # a reply never crowds the conversation out of the context
            options = dataclasses.replace(options, max_new_tokens=context // 2)
        newest = checked[-1]
        learned, memories = self._use_memory(user_id, newest, remember) if user_id is not None else ([], [])
        with_bank = bool(self.loaded.model.config.memory_layers)
        prompt = self.prompt(checked, memories, options.max_new_tokens)
        decoder = ReplyDecoder(self.loaded, prompt, options, memories if with_bank else None, persona)
        ids: list[int] = []
        outcome: dict[str, Any] = {"first_token_s": 0.0}

        def pieces() -> Generator[str, None, None]:
            shown, text = "", ""
            for token in decoder:
                ids.append(token)
                if len(ids) == 1:
                    outcome["first_token_s"] = time.perf_counter() - started
                text, leaked = clean_reply(self.loaded.text_of(ids))
                if leaked:
                    break
                if len(ids) >= options.max_new_tokens - LIMIT_HOLDBACK_TOKENS or text.endswith("\ufffd"):
                    continue
                settled = text[: len(text) - STREAM_HOLDBACK_CHARS]
                if len(settled) > len(shown) and settled.startswith(shown):
                    yield settled[len(shown):]
                    shown = settled
            final = text.strip()
            if decoder.hit_limit:
                final = cut_at_sentence_end(final, keep=shown)
            shown_core = shown.rstrip()
            if not final.startswith(shown_core):  # cannot take back what was shown
                final = shown_core
            final = final or "…"
            tail = final[len(shown_core):]
            outcome["text"] = final
            if tail:
                yield tail.lstrip() if shown != shown_core else tail

        def finish(text: str | None) -> Reply:
            if user_id is not None and newest["role"] == "user" and remember:
                try:
                    self.memory.remember_turn(user_id, newest["content"])
                except MemoryStoreError as exc:
                    raise ChatError(str(exc)) from exc
            return Reply(outcome["text"] if text is None else text, decoder.emotion, tuple(memories), tuple(learned), len(ids),
                         decoder.hit_limit, outcome["first_token_s"], time.perf_counter() - started, len(prompt))

        result = ReplyStream(decoder.emotion, pieces(), finish)
        return result if stream else result.result
