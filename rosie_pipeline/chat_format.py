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

#: The same rendering as :func:`render_text`, as a Jinja template (``messages`` of role/content/emotion,
#: ``memory`` optional, ``add_generation_prompt`` for inference).
CHAT_TEMPLATE = (
    "{%- set nl = '\\n' -%}"
    "{%- for message in messages -%}"
    "{%- if message.role == 'system' -%}<|system|>{{ message.content }}{{ nl }}"
    "{%- if memory is defined and memory -%}{%- for fact in memory -%}<|memory|>{{ fact }}{{ nl }}{%- endfor -%}{%- endif -%}"
    "{%- elif message.role == 'user' -%}<|user|>{{ message.content }}{{ nl }}"
    "{%- elif message.role == 'event' -%}<|event:{{ message.content }}|>{{ nl }}"
    "{%- elif message.role == 'rosie' or message.role == 'assistant' -%}"
    "<|rosie|><|emotion:{{ message.emotion or 'neutral' }}|>{{ message.content }}{{ nl }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|rosie|>{%- else -%}<|endoftext|>{%- endif -%}"
)


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


def render_segments(turns: list[Turn], memory: list[str] | None = None,
                    add_generation_prompt: bool = False) -> list[tuple[str, bool]]:
    """The rendered text as (piece, is Rosie's) pieces, in order; Rosie's pieces are what the loss
    covers (her emotion token, her words and the newline that ends her turn)."""
    pieces: list[tuple[str, bool]] = []
    for turn in turns:
        if turn.role == "system":
            pieces.append((f"{SYSTEM}{turn.text}\n", False))
            pieces += [(f"{MEMORY}{fact}\n", False) for fact in memory or []]
        elif turn.role == "user":
            pieces.append((f"{USER}{turn.text}\n", False))
        elif turn.role == "event":
            pieces.append((f"{event_token(turn.text)}\n", False))
        else:
            pieces.append((ROSIE, False))
            pieces.append((f"{emotion_token(turn.emotion or 'neutral')}{turn.text}\n", True))
    pieces.append((ROSIE, False) if add_generation_prompt else (EOS, False))
    return pieces


def render_text(turns: list[Turn], memory: list[str] | None = None, add_generation_prompt: bool = False) -> str:
    return "".join(piece for piece, _ in render_segments(turns, memory, add_generation_prompt))


def as_messages(turns: list[Turn]) -> list[dict[str, str | None]]:
    """Turns as chat-template messages (``role``/``content``/``emotion``)."""
    return [{"role": t.role, "content": t.text, "emotion": t.emotion} for t in turns]
