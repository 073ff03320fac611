"""Rosie as a character card, for the frontends people already chat in (SillyTavern, RisuAI, Agnai).

``rosie card`` writes, for one model:

* ``rosie.card.png``: her avatar with the card in PNG text chunks, ``ccv3`` (Character Card V3) and ``chara``
  (V2, which older frontends read), each base64 JSON;
* ``rosie.card.json``: the V3 card as plain JSON;
* ``sillytavern/``: a context template, an instruct template and a system prompt for SillyTavern's
  text-completion mode, in the model's own markup (read off its chat template), so that ``rosie serve``'s
  ``/v1/completions`` (or a llama.cpp-family backend running her export) sees the turns she was trained on.

Her greeting and example dialogue are her own: replies of this model to a wake-up and to a few questions,
decoded with fixed seeds, so the card shows what the model says rather than what someone hoped it would.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rosie_model.core.checkpoint import write_bytes_atomic
from rosie_model.serving.chat import Rosie
from rosie_model.serving.markup import TurnMarkup

NAME = "Rosie"
DESCRIPTION = ("{{char}} is a tiny animated companion who lives on {{user}}'s desktop. She sits on the edge of "
               "windows, reacts when she is dragged, poked or petted, and her face shows how she feels.")
PERSONALITY = "playful, curious, warm, a little cheeky; keeps her replies short; shows how she feels"
SCENARIO = "{{user}} is at the computer; {{char}} is on the desktop, happy to chat."
#: What she is asked for the card's example dialogue.
EXAMPLE_QUESTIONS = ("Hi! Who are you?", "I had a rough day at work.", "What do you like doing?")
TAGS = ["companion", "desktop pet", "wholesome", "slice of life", "rosie"]


@dataclass(frozen=True)
class CardFiles:
    png: Path
    json: Path
    presets: list[Path]


def _said(rosie: Rosie, messages: list[dict[str, Any]], event: str | None, seed: int) -> str:
    options = replace(rosie.options, seed=seed, max_new_tokens=min(rosie.options.max_new_tokens, 48))
    return rosie.reply(messages, event=event, options=options, remember=False).text


def character_card(rosie: Rosie) -> dict[str, Any]:
    """The V3 card of this model (its ``data`` is also a complete V2 card)."""
    loaded = rosie.loaded
    greeting_event = "wake" if "wake" in rosie.events else None
    greeting = _said(rosie, [] if greeting_event else [{"role": "user", "content": "Hi!"}], greeting_event, seed=0)
    examples = "".join(f"<START>\n{{{{user}}}}: {question}\n{{{{char}}}}: "
                       f"{_said(rosie, [{'role': 'user', 'content': question}], None, seed=n)}\n"
                       for n, question in enumerate(EXAMPLE_QUESTIONS, start=1))
    emotions, events = list(loaded.model.config.emotions), list(rosie.events)
    made = int(loaded.weights.stat().st_mtime)
    return {
        "spec": "chara_card_v3", "spec_version": "3.0",
        "data": {
            "name": NAME, "description": DESCRIPTION, "personality": PERSONALITY, "scenario": SCENARIO,
            "first_mes": greeting, "mes_example": examples, "alternate_greetings": [],
            "system_prompt": loaded.system_prompt or "", "post_history_instructions": "",
            "creator_notes": (f"Rosie as {rosie.label} says it. Run her with `rosie serve` and connect SillyTavern "
                              "as Chat Completion, source Custom (OpenAI-compatible), URL http://127.0.0.1:8000/v1, "
                              "model rosie; for Text Completion import the presets in sillytavern/. Her emotions: "
                              f"{', '.join(emotions)} (her server's /api/classify gives them to Character "
                              f"Expressions). Her desktop events: {', '.join(events)}."),
            "tags": TAGS, "creator": "Rosie's pipeline", "character_version": rosie.label,
            "extensions": {"rosie": {"model": rosie.label, "emotions": emotions, "events": events}},
            "nickname": "", "creator_notes_multilingual": {}, "source": [], "group_only_greetings": [],
            "creation_date": made, "modification_date": made,
            "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}],
        },
    }


def as_v2(card: dict[str, Any]) -> dict[str, Any]:
    """The V2 copy a V3 card keeps in its ``chara`` chunk: the V2 fields of its data."""
    v3_only = {"nickname", "creator_notes_multilingual", "source", "group_only_greetings", "creation_date",
               "modification_date", "assets"}
    return {"spec": "chara_card_v2", "spec_version": "2.0",
            "data": {k: v for k, v in card["data"].items() if k not in v3_only}}


def avatar(size: tuple[int, int] = (400, 600)) -> Any:
    """Her face as the card's picture: the avatar's happy look, drawn (no image files shipped)."""
    from PIL import Image, ImageDraw

    width, height = size
    image = Image.new("RGB", size, (255, 228, 236))
    draw = ImageDraw.Draw(image)
    cx, cy, r = width // 2, height // 2, width // 3
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 182, 203), outline=(214, 92, 132), width=6)
    for side in (-1, 1):
        ex = cx + side * r // 2.5
        draw.arc((ex - 28, cy - 50, ex + 28, cy - 2), 200, 340, fill=(90, 40, 60), width=8)  # ^ ^ eyes
        draw.ellipse((ex - 26 + side * 18, cy + 12, ex + 26 + side * 18, cy + 40), fill=(255, 140, 170))  # blush
    draw.arc((cx - 55, cy - 10, cx + 55, cy + 70), 20, 160, fill=(90, 40, 60), width=8)  # the smile
    return image


def write_card(rosie: Rosie, out: Path) -> CardFiles:
    """The card files of this model in ``out`` (each written atomically)."""
    import io

    from PIL.PngImagePlugin import PngInfo

    card = character_card(rosie)
    chunks = PngInfo()
    chunks.add_text("chara", base64.b64encode(json.dumps(as_v2(card)).encode()).decode("ascii"))
    chunks.add_text("ccv3", base64.b64encode(json.dumps(card).encode()).decode("ascii"))
    picture = io.BytesIO()
    avatar().save(picture, format="PNG", pnginfo=chunks)
    png, plain = out / "rosie.card.png", out / "rosie.card.json"
    write_bytes_atomic(png, picture.getvalue())
    write_bytes_atomic(plain, json.dumps(card, indent=2, ensure_ascii=False).encode())
    presets = []
    for kind, preset in TurnMarkup.of(rosie.loaded).sillytavern(NAME, card["data"]["system_prompt"]).items():
        path = out / "sillytavern" / f"{kind}.json"
        write_bytes_atomic(path, json.dumps(preset, indent=2, ensure_ascii=False).encode())
        presets.append(path)
    return CardFiles(png, plain, presets)
