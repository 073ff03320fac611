"""Rosie's chat format: special tokens, the emotions her avatar can show, desktop events, and how a
conversation becomes text.

Defined once here. The tokenizer reserves the tokens and writes the lists and a Jinja ``chat_template``
into ``tokenizer_config.json`` (the Hugging Face convention), which is how rosie_model renders prompts
at inference exactly as in training — as data, not shared code.

A conversation renders as::

    <|system|>You are Rosie, …\n
    <|user|>Hello!\n
    <|rosie|><|emotion:happy|>Hey there! ✨ What's up?\n
    <|event:drag|>\n
    <|rosie|><|emotion:surprised|>Eep! 💕 Where are we going?\n
    <|endoftext|>

(``<|memory|>fact\n`` lines follow the system block only when memory travels in the context, as on the
bootstrap path; the scratch model reads memory through memory attention instead.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

EOS = "<|endoftext|>"
PAD = "<|pad|>"
SYSTEM = "<|system|>"
USER = "<|user|>"
ROSIE = "<|rosie|>"
MEMORY = "<|memory|>"

#: Rosie's persona as the system block of every conversation (also written to tokenizer_config.json).
ROSIE_SYSTEM_PROMPT = (
    "You are Rosie, a small, playful and kind companion who lives on the user's desktop. You are curious, "
    "warm and a little cheeky, you keep replies short, and you show how you feel."
)

#: States Rosie's avatar can show; every Rosie turn starts with one.
EMOTIONS = ("neutral", "happy", "excited", "love", "surprised", "curious", "shy", "sad", "angry", "scared")
#: Desktop interactions that reach Rosie as events.
EVENTS = ("drag", "drop", "poke", "pet", "tickle", "idle", "wake", "sleep")


def emotion_token(name: str) -> str:
    if name not in EMOTIONS:
        raise ValueError(f"unknown emotion {name!r}; expected one of {EMOTIONS}")
    return f"<|emotion:{name}|>"


def event_token(name: str) -> str:
    if name not in EVENTS:
        raise ValueError(f"unknown event {name!r}; expected one of {EVENTS}")
    return f"<|event:{name}|>"


SPECIAL_TOKENS: tuple[str, ...] = (
    EOS, PAD, SYSTEM, USER, ROSIE, MEMORY,
    *(event_token(e) for e in EVENTS),
    *(emotion_token(e) for e in EMOTIONS),
)


ROLES = ("system", "user", "rosie", "event")

#: How a desktop event reads in a chat markup that has no token for it (the event token stays in front).
EVENT_ACTIONS = {"drag": "*drags you across the screen*", "drop": "*lets go of you*", "poke": "*pokes you*",
                 "pet": "*pets you gently*", "tickle": "*tickles you*", "idle": "*has been quiet for a while*",
                 "wake": "*wakes you up*", "sleep": "*says it is time to sleep*"}


@dataclass(frozen=True)
class ChatFormat:
    """How turns become text around Rosie's emotion, event and memory tokens.

    ``rosie`` is her own markup (speaker tokens); ``chatml`` is the markup instruction-tuned models such as
    SmolLM2 were trained on, so on the bootstrap path the pretrained model reads a conversation as it
    learned to and keeps its manners from the first step. Placeholders: ``{text}``, ``{event}``,
    ``{action}``, ``{fact}``. Her turn is ``rosie_open`` (the generation prompt), her emotion token,
    ``reply_start`` and her words, closed by ``rosie_close``; in ChatML the emotion token comes before
    ``<|im_start|>assistant``, so her words start exactly where the pretrained model's replies always did.
    ``stops`` end Rosie's turn when she generates them."""

    name: str
    system: str
    user: str
    event: str
    rosie_open: str
    reply_start: str
    rosie_close: str
    memory_open: str
    memory_line: str
    memory_close: str
    stops: tuple[str, ...]


ROSIE_FORMAT = ChatFormat(
    name="rosie", system=f"{SYSTEM}{{text}}\n", user=f"{USER}{{text}}\n", event="<|event:{event}|>\n",
    rosie_open=ROSIE, reply_start="", rosie_close="\n", memory_open="", memory_line=f"{MEMORY}{{fact}}\n", memory_close="",
    stops=(EOS, USER, SYSTEM, ROSIE, MEMORY, *(f"<|event:{e}|>" for e in EVENTS)))
CHATML_FORMAT = ChatFormat(
    name="chatml", system="<|im_start|>system\n{text}<|im_end|>\n", user="<|im_start|>user\n{text}<|im_end|>\n",
    event="<|im_start|>user\n<|event:{event}|>{action}<|im_end|>\n", rosie_open="", reply_start="<|im_start|>assistant\n",
    rosie_close="<|im_end|>\n", memory_open="<|im_start|>system\nWhat you remember about the user:",
    memory_line="\n- {fact}", memory_close="<|im_end|>\n",
    stops=("<|im_end|>", "<|im_start|>", EOS, MEMORY, *(f"<|event:{e}|>" for e in EVENTS)))
CHAT_FORMATS = {f.name: f for f in (ROSIE_FORMAT, CHATML_FORMAT)}


def chat_format_for(vocabulary: set[str] | dict[str, int]) -> ChatFormat:
    """The markup a tokenizer's model already knows: ChatML when it has those tokens, else Rosie's own."""
    return CHATML_FORMAT if {"<|im_start|>", "<|im_end|>"} <= set(vocabulary) else ROSIE_FORMAT


def chat_template(fmt: ChatFormat) -> str:
    """``fmt`` as a Jinja chat template (``messages`` of role/content/emotion, ``memory`` optional,
    ``add_generation_prompt`` for inference) that renders exactly like :func:`render_text`."""
    def literal(text: str) -> str:  # whitespace control strips bare newlines next to tags
        return text.replace("\n", "{{ nl }}")

    def fill(pattern: str, **values: str) -> str:
        return literal(pattern.format(**values))

    actions = ", ".join(f"'{k}': '{v}'" for k, v in EVENT_ACTIONS.items())
    return (
        "{%- set nl = '\\n' -%}"
        f"{{%- set actions = {{{actions}}} -%}}"
        "{%- for message in messages -%}"
        "{%- if message.role == 'system' -%}" + fill(fmt.system, text="{{ message.content }}")
        + "{%- if memory is defined and memory -%}" + literal(fmt.memory_open)
        + "{%- for fact in memory -%}" + fill(fmt.memory_line, fact="{{ fact }}") + "{%- endfor -%}"
        + literal(fmt.memory_close) + "{%- endif -%}"
        "{%- elif message.role == 'user' -%}" + fill(fmt.user, text="{{ message.content }}")
        + "{%- elif message.role == 'event' -%}"
        + fill(fmt.event, event="{{ message.content }}", action="{{ actions[message.content] }}")
        + "{%- elif message.role == 'rosie' or message.role == 'assistant' -%}" + literal(fmt.rosie_open)
        + "<|emotion:{{ message.emotion or 'neutral' }}|>" + literal(fmt.reply_start) + "{{ message.content }}"
        + literal(fmt.rosie_close)
        + "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}" + literal(fmt.rosie_open) + "{%- else -%}" + EOS + "{%- endif -%}"
    )


#: Rosie's own markup as a Jinja template (what her tokenizer carries).
CHAT_TEMPLATE = chat_template(ROSIE_FORMAT)

@dataclass(frozen=True)
class Turn:
    """One turn: ``role`` is system, user, rosie or event (``text`` is then the event's name)."""

    role: str
    text: str
    emotion: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; expected one of {ROLES}")
        if self.role == "event":
            event_token(self.text)
        if self.role == "rosie":
            emotion_token(self.emotion or "neutral")


class Piece(NamedTuple):
    """A stretch of rendered text. ``rosie``: covered by the loss (her emotion token, her words, what
    closes her turn). ``written``: words people wrote (a message, a remembered fact), which are encoded
    as plain text so that ``<|system|>`` typed by a user never becomes the token."""

    text: str
    rosie: bool = False
    written: bool = False


def _filled(pattern: str, field: str, value: str, rosie: bool = False) -> list[Piece]:
    before, _, after = pattern.partition("{" + field + "}")
    return [Piece(before, rosie), Piece(value, rosie, written=True), Piece(after, rosie)]


def render_segments(turns: list[Turn], memory: list[str] | None = None, add_generation_prompt: bool = False,
                    fmt: ChatFormat = ROSIE_FORMAT) -> list[Piece]:
    """The rendered text as pieces, in order (see :class:`Piece`); empty ones left out."""
    pieces: list[Piece] = []
    for turn in turns:
        if turn.role == "system":
            pieces += _filled(fmt.system, "text", turn.text)
            if memory:
                pieces += memory_pieces(memory, fmt)
        elif turn.role == "user":
            pieces += _filled(fmt.user, "text", turn.text)
        elif turn.role == "event":
            pieces.append(Piece(fmt.event.format(event=turn.text, action=EVENT_ACTIONS[turn.text])))
        else:
            pieces.append(Piece(fmt.rosie_open))
            pieces.append(Piece(f"{emotion_token(turn.emotion or 'neutral')}{fmt.reply_start}", rosie=True))
            pieces += _filled("{text}" + fmt.rosie_close, "text", turn.text, rosie=True)
    pieces.append(Piece(fmt.rosie_open) if add_generation_prompt else Piece(EOS))
    return [p for p in pieces if p.text]


def memory_pieces(facts: list[str], fmt: ChatFormat = ROSIE_FORMAT) -> list[Piece]:
    """The block of remembered facts that follows the system block (when memory travels in the context)."""
    pieces = [Piece(fmt.memory_open)]
    for fact in facts:
        pieces += _filled(fmt.memory_line, "fact", fact)
    return [p for p in pieces + [Piece(fmt.memory_close)] if p.text]


def render_text(turns: list[Turn], memory: list[str] | None = None, add_generation_prompt: bool = False,
                fmt: ChatFormat = ROSIE_FORMAT) -> str:
    return "".join(p.text for p in render_segments(turns, memory, add_generation_prompt, fmt))


def as_messages(turns: list[Turn]) -> list[dict[str, str | None]]:
    """Turns as chat-template messages (``role``/``content``/``emotion``)."""
    return [{"role": t.role, "content": t.text, "emotion": t.emotion} for t in turns]
