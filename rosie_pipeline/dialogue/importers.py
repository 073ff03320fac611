"""Importers for conversations users already have, all turned into Rosie dialogues.

* real human conversations from the ``chitchat-dataset`` package;
* Reddit comment chains from the ingest stage (``reddit_threads/*/dialogue_candidates.parquet``);
* SillyTavern / TavernAI chat logs (``.jsonl``: a metadata line, then one message per line);
* character cards, V1/V2/V3 JSON or PNG with the card in a ``ccv3`` or ``chara`` text chunk (base64 JSON;
  ``tEXt``, ``zTXt`` or ``iTXt``, compressed or not);
* CharacterAI dumps as exported by the CAI tools / Pygmalion's converters (``histories`` JSON).

Other people's names become ``You`` (the user) and ``Rosie`` (the character), e-mail addresses, IPs
and phone numbers are redacted, a card's character becomes a persona with its own id, and Rosie's
turns get an emotion from the weak labeller (``neutral`` when it abstains). A malformed record is
skipped with a reason; a file that breaks an importer in a way no rule foresaw is skipped whole, with
its name and the error (:func:`read_landing_file`), never a crash of the stage.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosie_pipeline.atomic import read_json, write_json_atomic
from rosie_pipeline.chat_format import Turn
from rosie_pipeline.curate.filters import Doc, PIIRedactor
from rosie_pipeline.dialogue.emotion import weak_label
from rosie_pipeline.dialogue.schema import ROSIE_PERSONA
from rosie_pipeline.ingest.records import Rejected, bad, skipped
from rosie_pipeline.parquet import iter_rows

_PII = PIIRedactor()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Imported:
    source: str
    locator: str
    turns: list[Turn]
    persona: int = ROSIE_PERSONA


@dataclass
class PersonaRegistry:
    """Persona names to ids: 0 is Rosie; cards get 1.. up to ``size - 1`` (then share ids by hash)."""

    path: Path
    size: int = 8
    ids: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = {"Rosie": ROSIE_PERSONA, **(read_json(self.path) or {})}

    def id_for(self, name: str) -> int:
        if name not in self.ids:
            used = len(set(self.ids.values()))
            self.ids[name] = used if used < self.size else 1 + zlib.crc32(name.encode()) % (self.size - 1)
        return self.ids[name]

    def save(self) -> None:
        write_json_atomic(self.path, self.ids)


def with_first_names(names: dict[str, str]) -> dict[str, str]:
    """``names`` plus each multi-word name's first word ("Bella Swan" is also "Bella" in the text), longest
    names first so the full name is replaced before its parts."""
    expanded = dict(names)
    for name, replacement in names.items():
        if isinstance(name, str) and " " in name.strip() and len(name.split()[0]) > 1:
            expanded.setdefault(name.split()[0], replacement)
    return dict(sorted(expanded.items(), key=lambda item: -len(item[0]) if isinstance(item[0], str) else 0))


def clean(text: str, names: dict[str, str]) -> str:
    """Names replaced (whole words, case-insensitive), PII redacted, whitespace tidied; a lone surrogate
    (``"\\ud800"`` in JSON) becomes ``?`` so the text can be written."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    for name, replacement in names.items():
        if isinstance(name, str) and name.strip():  # a name that is not a string (an int user_name) is no name
            text = re.sub(rf"(?<!\w){re.escape(name.strip())}(?!\w)", replacement, text, flags=re.IGNORECASE)
    doc = Doc(text.strip())
    _PII(doc)
    return re.sub(r"[ \t]+", " ", doc.text).strip()


def rosie_turn(text: str) -> Turn:
    return Turn("rosie", text, weak_label(text).emotion or "neutral")


def _alternating(texts: list[str], names: dict[str, str]) -> list[Turn]:
    """Speakers alternate, user first: the second speaker plays Rosie."""
    turns = []
    for i, raw in enumerate(texts):
        text = clean(raw, names)
        if text:
            turns.append(rosie_turn(text) if i % 2 else Turn("user", text))
    return turns


def chitchat_conversations(limit: int | None = None, max_turns: int = 16) -> Iterator[Imported]:
    """Up to ``limit`` two-person conversations (monologues skipped), each cut into windows of at most
    ``max_turns`` turns that start with the user."""
    import chitchat_dataset

    produced = 0
    for convo_id, convo in sorted(chitchat_dataset.Dataset().items()):
        texts = [" ".join(m["text"].strip() for m in group) for group in convo["messages"]]
        turns = _alternating(texts, {})
        for start in range(0, len(turns), max_turns):
            window = turns[start : start + max_turns]
            if limit is not None and produced >= limit:
                return
            if window and window[0].role == "user" and any(t.role == "rosie" for t in window):
                produced += 1
                yield Imported("chitchat", f"{convo_id}#{start}", window)


def reddit_chains(files: list[Path]) -> Iterator[Imported]:
    for path in files:
        for row in iter_rows(path, columns=["id", "turns"]):
            turns = _alternating([t["text"] for t in row["turns"]], {})
            if sum(t.role == "rosie" for t in turns):
                yield Imported("reddit", row["id"], turns)


def read_sillytavern(path: Path) -> Iterator[Imported | Rejected]:
    """A SillyTavern/TavernAI ``.jsonl`` chat: first line ``{user_name, character_name, …}``."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = [line for line in fh if line.strip()]
    try:
        header = json.loads(lines[0]) if lines else None
    except (json.JSONDecodeError, RecursionError) as exc:
        yield bad("invalid_json", 1, str(exc) or "nested too deeply", lines[0])
        return
    if not isinstance(header, dict) or not isinstance(header.get("character_name"), str):
        yield bad("not_a_chat_log", 1, "first line has no character_name", str(lines[:1]))
        return
    names = with_first_names({header.get("user_name") or "": "You", header["character_name"]: "Rosie"})
    turns: list[Turn] = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            message = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            yield bad("invalid_json", number, str(exc) or "nested too deeply", line)
            continue
        if not isinstance(message, dict) or not isinstance(message.get("mes"), str):
            yield bad("missing_fields", number, "message without 'mes'", line)
            continue
        if message.get("is_system"):
            continue
        text = clean(message["mes"], names)
        if text:
            turns.append(Turn("user", text) if message.get("is_user") else rosie_turn(text))
    if any(t.role == "rosie" for t in turns):
        yield Imported("sillytavern", path.name, turns)
    else:
        yield skipped("no_character_turns")


#: A card's text chunk may be compressed; more than this once inflated is refused (a zip bomb in a PNG).
MAX_CARD_BYTES = 8 << 20
#: The card chunks a PNG may carry, the one frontends prefer first (V3 cards keep a V2 copy in ``chara``).
CARD_KEYWORDS = (b"ccv3", b"chara")


def _inflate(data: bytes) -> bytes | None:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_CARD_BYTES)
    except zlib.error:
        return None
    return None if inflater.unconsumed_tail else out


def png_text_chunks(data: bytes) -> dict[bytes, bytes]:
    """A PNG's text chunks, keyword to value, as they are written: ``tEXt`` (plain), ``zTXt`` (zlib) and
    ``iTXt`` (plain or zlib, after a language tag and a translated keyword). A chunk that does not inflate
    within :data:`MAX_CARD_BYTES` is left out; the first of a repeated keyword wins."""
    chunks: dict[bytes, bytes] = {}
    pos = len(PNG_MAGIC)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IEND":
            break
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        keyword, _, rest = body.partition(b"\x00")
        value: bytes | None = rest
        if kind == b"zTXt":  # compression method, then the zlib stream
            value = _inflate(rest[1:])
        elif kind == b"iTXt":  # compression flag, method, language tag, translated keyword, then the text
            compressed, text = rest[:1] == b"\x01", rest[2:].split(b"\x00", 2)[-1]
            value = _inflate(text) if compressed else text
        if value is not None:
            chunks.setdefault(keyword, value)
    return chunks


def card_from_png(data: bytes) -> dict[str, Any] | None:
    """The character card a PNG carries (base64 JSON in a ``ccv3`` or ``chara`` text chunk), or None."""
    if not data.startswith(PNG_MAGIC):
        return None
    chunks = png_text_chunks(data)
    for keyword in CARD_KEYWORDS:
        if keyword in chunks:
            try:
                card = json.loads(base64.b64decode(chunks[keyword]))
            except (ValueError, RecursionError):  # binascii, JSON and UTF-8 errors are ValueErrors
                continue
            if isinstance(card, dict):
                return card
    return None


def read_card(path: Path, registry: PersonaRegistry) -> Iterator[Imported | Rejected]:
    """A V1/V2/V3 character card (JSON, or PNG with a ``ccv3``/``chara`` chunk): its greeting and example
    dialogues."""
    raw = path.read_bytes()
    if raw.startswith(PNG_MAGIC):
        card = card_from_png(raw)
        if card is None:
            yield bad("png_without_card", None, "no 'ccv3' or 'chara' text chunk with a base64 JSON card", raw[:64])
            return
    else:
        try:
            card = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            yield bad("invalid_json", None, str(exc) or "nested too deeply", raw[:2000])
            return
    data = card.get("data", card) if isinstance(card, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        yield bad("not_a_card", None, "no character name (V1 'name' or V2 'data.name')", raw[:2000])
        return
    wrong = [key for key in ("first_mes", "mes_example") if not isinstance(data.get(key) or "", str)]
    if wrong:
        yield bad("bad_field_type", None, f"{', '.join(wrong)} must be text", raw[:2000])
        return
    persona = registry.id_for(data["name"])
    names = with_first_names({"{{char}}": "Rosie", "{{user}}": "You", "<BOT>": "Rosie", "<USER>": "You",
                              data["name"]: "Rosie"})
    if data.get("first_mes"):
        yield Imported("character_card", f"{path.name}#greeting", [rosie_turn(clean(data["first_mes"], names))], persona)
    for n, block in enumerate(re.split(r"<START>", data.get("mes_example") or "")):
        turns = []
        for line in block.strip().splitlines():
            speaker, sep, text = line.partition(":")
            if not sep or not text.strip():
                continue
            who = speaker.strip()
            text = clean(text, names)
            if who in ("{{user}}", "<USER>", "You"):
                turns.append(Turn("user", text))
            elif who in ("{{char}}", "<BOT>", data["name"], "Rosie"):
                turns.append(rosie_turn(text))
        if any(t.role == "rosie" for t in turns):
            yield Imported("character_card", f"{path.name}#example{n}", turns, persona)


def read_characterai(path: Path, registry: PersonaRegistry) -> Iterator[Imported | Rejected]:
    """A CharacterAI dump: ``{"info": {"character": {"name"}}, "histories": {"histories": [{"msgs": […]}]}}``."""
    try:
        dump = json.loads(path.read_text(encoding="utf-8"))
        character = dump["info"]["character"]["name"]
        histories = dump["histories"]["histories"]
        if not isinstance(character, str) or not isinstance(histories, list):
            raise TypeError("the character's name must be text and histories a list")
    except (ValueError, RecursionError, KeyError, TypeError) as exc:
        yield bad("not_a_characterai_dump", None, f"{type(exc).__name__}: {exc}", path.read_bytes()[:2000])
        return
    persona = registry.id_for(character)
    for n, history in enumerate(histories):
        messages = history.get("msgs", []) if isinstance(history, dict) else []
        humans = {m["src"].get("name") for m in messages
                  if isinstance(m, dict) and isinstance(m.get("src"), dict) and m["src"].get("is_human")}
        names = with_first_names({character: "Rosie", **dict.fromkeys(humans, "You")})
        turns = []
        for message in messages:
            try:
                is_human, text = bool(message["src"]["is_human"]), message["text"]
                if not isinstance(text, str):
                    raise TypeError("text is not a string")
            except (KeyError, TypeError):
                yield bad("missing_fields", n, "message without src/text", json.dumps(message, default=str)[:2000])
                continue
            text = clean(text, names)
            if text:
                turns.append(Turn("user", text) if is_human else rosie_turn(text))
        if any(t.role == "rosie" for t in turns):
            yield Imported("characterai", f"{path.name}#{n}", turns, persona)


def read_landing_file(path: Path, registry: PersonaRegistry) -> Iterator[Imported | Rejected]:
    """Dispatch a file in ``landing/dialogue`` by its form: .jsonl chat logs, .png cards, .json cards or dumps.

    The file is read whole before anything is yielded, so one that breaks its importer costs that file:
    it is reported as ``unreadable_file`` with its name and the error, and the stage goes on."""
    try:
        items = list(_read_by_form(path, registry))
    except Exception as exc:  # noqa: BLE001 — a crafted file must not stop every other file's dialogues
        items = [bad("unreadable_file", None, f"{type(exc).__name__}: {str(exc)[:200]}")]
    for item in items:
        yield dataclasses.replace(item, file=path.name) if isinstance(item, Rejected) else item


def _read_by_form(path: Path, registry: PersonaRegistry) -> Iterator[Imported | Rejected]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from read_sillytavern(path)
    elif suffix == ".png":
        yield from read_card(path, registry)
    elif suffix == ".json":
        try:
            head = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as exc:
            yield bad("invalid_json", None, str(exc) or "nested too deeply", path.read_bytes()[:2000])
            return
        yield from (read_characterai(path, registry) if isinstance(head, dict) and "histories" in head
                    else read_card(path, registry))
