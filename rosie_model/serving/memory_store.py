"""Rosie's long-term memory: a per-user SQLite store of facts and past turns with their memory vectors.

Facts come from what the user says, by simple rules (``extract_facts``), written the way the memory
training data writes them ("The user's favourite colour is blue."), so memory attention reads them as
it learned to. A fact with a *slot* (name, favourite colour, home city…) replaces the older one; past
turns are kept up to ``max_turns`` per user. Each entry keeps its memory vector (the model's pooled
reading of the text) with the model it came from; retrieval ranks entries by that vector's cosine with
the message plus word overlap, and re-reads entries written by another model.

Every change is one SQLite transaction, so a killed process leaves the store as it was before or after,
never half-written; a file that is not a healthy SQLite database is refused, not repaired or replaced.
"""

from __future__ import annotations

import functools
import itertools
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rosie_model.core.errors import RosieError

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('fact', 'turn')),
    slot TEXT,
    text TEXT NOT NULL,
    vector BLOB,
    vector_model TEXT,
    created REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS memories_slot ON memories (user_id, slot) WHERE slot IS NOT NULL;
CREATE INDEX IF NOT EXISTS memories_user ON memories (user_id, kind, created);
"""

#: Words too common to count as overlap between a question and a memory.
STOP_WORDS = frozenset(
    "a an the i you me my your is am are was were be to of in on at for and or but do does did what which who "
    "whom where when why how it its it's that this these those with about from as by so not no yes can could "
    "would should will just really again user user's said tell told remember know".split()
)


class MemoryStoreError(RosieError):
    """The store cannot be opened or used; the message says which file and what to do."""


@dataclass(frozen=True)
class Memory:
    id: int
    user_id: str
    kind: str
    slot: str | None
    text: str
    created: float


#: How a remembered turn is written: the user's words, quoted.
TURN_PREFIX = "The user said: "


@dataclass(frozen=True)
class ExtractedFact:
    text: str
    slot: str | None


_VALUE = r"([A-Za-z][\w' -]{0,40}?)"


def _theirs(value: str) -> str:
    """"my grandma's house" as the user's, not Rosie's, when written about the user."""
    return re.sub(r"^my\b", "their", value, flags=re.IGNORECASE)


def _thing(word: str) -> str:
    """One spelling per slot: "favorite color" and "favourite colour" are the same fact."""
    return re.sub(r"\bcolor\b", "colour", word.lower())


_END = r"\s*(?:[.!?,;]|$|\band\b|\bbut\b)"
FACT_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], ExtractedFact]], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), build) for pattern, build in (
        (r"\b(?:my name is|call me|i'm called|i am called)\s+([A-Z][\w'-]{0,30})",
         lambda m: ExtractedFact(f"The user's name is {m[1].capitalize()}.", "name")),
        (r"\bmy (?:favou?rite) ([a-z]+(?: [a-z]+)?) is " + _VALUE + _END,
         lambda m: ExtractedFact(f"The user's favourite {_thing(m[1])} is {m[2]}.", f"favourite:{_thing(m[1])}")),
        (r"\bi live in " + _VALUE + _END,
         lambda m: ExtractedFact(f"The user lives in {m[1]}.", "home")),
        (r"\bi have an? ([a-z]+(?: [a-z]+)?) (?:called|named) ([A-Z][\w'-]{0,30})",
         lambda m: ExtractedFact(f"The user has a {m[1].lower()} named {m[2].capitalize()}.", f"pet:{m[1].lower()}")),
        (r"\bmy ([a-z]+(?: [a-z]+)?)(?:'s name is| is (?:called|named)) ([A-Z][\w'-]{0,30})",
         lambda m: ExtractedFact(f"The user has a {m[1].lower()} named {m[2].capitalize()}.", f"pet:{m[1].lower()}")),
        (r"\bi(?:'m| am) going to " + _VALUE + r" on (monday|tuesday|wednesday|thursday|friday|saturday|sunday)",
         lambda m: ExtractedFact(f"The user is going to {_theirs(m[1])} on {m[2].capitalize()}.",
                                 f"plan:{m[2].lower()}")),
        (r"\bi(?:'m| am) (\d{1,3}) years old",
         lambda m: ExtractedFact(f"The user is {m[1]} years old.", "age")),
        (r"\bi work as an? " + _VALUE + _END,
         lambda m: ExtractedFact(f"The user works as a {m[1]}.", "job")),
        (r"\bi could eat " + _VALUE + r" every day",
         lambda m: ExtractedFact(f"The user's favourite food is {m[1]}.", "favourite:food")),
        (r"\bi(?:'ve| have) been (?:really )?into " + _VALUE + _END,
         lambda m: ExtractedFact(f"The user's hobby is {m[1]}.", "hobby")),
        (r"\bi (?:really )?(?:like|love|enjoy) " + _VALUE + _END,
         lambda m: ExtractedFact(f"The user likes {m[1]}.", None)),
    )
)


def extract_facts(message: str) -> list[ExtractedFact]:
    """Facts about the user stated in one message, by pattern (a start: no model involved)."""
    found: list[ExtractedFact] = []
    for pattern, build in FACT_RULES:
        for match in pattern.finditer(message):
            fact = build(match)
            if not content_words(match[match.lastindex or 0]):  # "I like you", "I love it": nothing to keep
                continue
            if fact not in found:
                found.append(fact)
    return found


def content_words(text: str) -> set[str]:
    words = {w.lower().strip("'") for w in re.findall(r"[\w']+", text)}
    stems = {w.removesuffix("'s").removesuffix("s") for w in words if w not in STOP_WORDS}
    return {s for s in stems if s and s not in STOP_WORDS}


def _damage_reported(method: Callable[..., Any]) -> Callable[..., Any]:
    """A store damaged after it was opened (a bad page, a dropped table) raises MemoryStoreError naming the
    file and the fix, not a raw sqlite3 error (vector blobs of the wrong size are re-embedded by recall)."""
    @functools.wraps(method)
    def guarded(self: MemoryStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise MemoryStoreError(f"memory store {self.path} is damaged ({type(exc).__name__}: {exc}); it was "
                                   "left untouched: move it aside to start with an empty memory") from exc
    return guarded


class MemoryStore:
    """The SQLite file at ``path`` (created on first use). ``embed`` turns texts into unit vectors and
    ``model_tag`` names the model that made them; both may be None to list and forget without a model."""

    def __init__(self, path: Path, embed: Callable[[list[str]], np.ndarray] | None = None,
                 model_tag: str | None = None, max_turns: int = 200, read_only: bool = False) -> None:
        """``read_only`` (``rosie memory list``) opens the file as it is: no journal mode or schema change,
        and a missing store reads as empty without being created."""
        self.path, self.embed, self.model_tag, self.max_turns = Path(path), embed, model_tag, max_turns
        try:
            if read_only:
                target = f"file:{self.path}?mode=ro" if self.path.exists() else "file::memory:"
                self.db = sqlite3.connect(target, uri=True, timeout=10, isolation_level=None, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise MemoryStoreError(f"memory store {self.path} was written by a newer Rosie (schema {version})")
            if read_only and version:
                return
            if not read_only:
                self.db.execute("PRAGMA journal_mode=WAL")
            with self._transaction():
                for statement in filter(str.strip, SCHEMA.split(";")):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise MemoryStoreError(f"memory store {self.path} is not a readable SQLite database ({exc}); it was "
                                   "left untouched: move it aside to start with an empty memory") from exc

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)

    def close(self) -> None:
        self.db.close()

    def _vectors(self, texts: list[str]) -> list[bytes | None]:
        if self.embed is None or not texts:
            return [None] * len(texts)
        return [np.asarray(v, dtype=np.float32).tobytes() for v in self.embed(texts)]

    @_damage_reported
    def remember_facts(self, user_id: str, facts: list[ExtractedFact]) -> list[Memory]:
        """Store facts; one with a slot replaces that slot's older fact. Returns what was stored."""
        if not facts:
            return []
        vectors, now = self._vectors([f.text for f in facts]), time.time()
        stored = []
        with self._transaction():
            for fact, vector in zip(facts, vectors):
                if fact.slot is None:
                    self.db.execute("DELETE FROM memories WHERE user_id = ? AND kind = 'fact' AND lower(text) = lower(?)",
                                    (user_id, fact.text))  # "likes Pizza" again is the same fact
                else:
                    self.db.execute("DELETE FROM memories WHERE user_id = ? AND slot = ?", (user_id, fact.slot))
                cursor = self.db.execute(
                    "INSERT INTO memories (user_id, kind, slot, text, vector, vector_model, created) "
                    "VALUES (?, 'fact', ?, ?, ?, ?, ?)", (user_id, fact.slot, fact.text, vector, self.model_tag, now))
                stored.append(Memory(int(cursor.lastrowid or 0), user_id, "fact", fact.slot, fact.text, now))
        return stored

    @_damage_reported
    def remember_turn(self, user_id: str, message: str) -> None:
        """Keep what the user said, dropping the oldest turns beyond ``max_turns``."""
        text = f"{TURN_PREFIX}{message.strip()[:500]}"
        vector = self._vectors([text])[0]
        with self._transaction():
            self.db.execute("INSERT INTO memories (user_id, kind, slot, text, vector, vector_model, created) "
                            "VALUES (?, 'turn', NULL, ?, ?, ?, ?)", (user_id, text, vector, self.model_tag, time.time()))
            self.db.execute("DELETE FROM memories WHERE id IN (SELECT id FROM memories WHERE user_id = ? AND "
                            "kind = 'turn' ORDER BY created DESC, id DESC LIMIT -1 OFFSET ?)", (user_id, self.max_turns))

    @_damage_reported
    def list(self, user_id: str | None = None, kind: str | None = None) -> list[Memory]:
        query = "SELECT id, user_id, kind, slot, text, created FROM memories WHERE 1 = 1"
        args: list[object] = []
        if user_id is not None:
            query, args = query + " AND user_id = ?", args + [user_id]
        if kind is not None:
            query, args = query + " AND kind = ?", args + [kind]
        return [Memory(*row) for row in self.db.execute(query + " ORDER BY user_id, created, id", args)]

    @_damage_reported
    def users(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT DISTINCT user_id FROM memories ORDER BY user_id")]

    @_damage_reported
    def forget(self, user_id: str | None, ids: list[int] | None = None) -> int:
        """Delete the given entries (of ``user_id`` when given), or all of a user's memories when
        ``ids`` is None. Returns how many were deleted."""
        where, args = [], []
        if user_id is not None:
            where.append("user_id = ?")
            args.append(user_id)
        if ids is not None:
            if not ids:
                return 0
            where.append(f"id IN ({', '.join('?' * len(ids))})")
            args += ids
        if not where:
            raise ValueError("forget needs a user or entry ids")
        with self._transaction():
            return self.db.execute(f"DELETE FROM memories WHERE {' AND '.join(where)}", args).rowcount

    @_damage_reported
    def recall(self, user_id: str, query: str, k: int = 4) -> list[Memory]:
        """The ``k`` entries most relevant to ``query``: cosine of memory vectors plus shared content
        words (which carry the tiny models, whose vectors are rough); facts before turns on ties. A past turn
        whose every fact is among the facts recalled is left out for the next entry: "The user said: My name is
        Desmond." beside "The user's name is Desmond." adds only a first-person line to copy."""
        rows = list(self.db.execute("SELECT id, user_id, kind, slot, text, created, vector, vector_model FROM memories "
                                    "WHERE user_id = ?", (user_id,)))
        if not rows or k <= 0:
            return []
        similarity = np.zeros(len(rows), dtype=np.float32)
        if self.embed is not None:
            asked_vector = np.asarray(self.embed([query])[0], dtype=np.float32)
            size = asked_vector.nbytes  # a blob of another size is damaged or from another model: re-embedded
            stale = [i for i, row in enumerate(rows) if row[6] is None or row[7] != self.model_tag or len(row[6]) != size]
            if stale:
                fresh = self._vectors([rows[i][4] for i in stale])
                with self._transaction():
                    for i, vector in zip(stale, fresh):
                        self.db.execute("UPDATE memories SET vector = ?, vector_model = ? WHERE id = ?",
                                        (vector, self.model_tag, rows[i][0]))
                        rows[i] = (*rows[i][:6], vector, self.model_tag)
            matrix = np.stack([np.frombuffer(row[6], dtype=np.float32) for row in rows])
            similarity = matrix @ asked_vector
        asked = content_words(query)
        overlap = np.array([len(asked & content_words(row[4])) / max(1, len(asked)) for row in rows], dtype=np.float32)
        kind_bonus = np.array([0.05 if row[2] == "fact" else 0.0 for row in rows], dtype=np.float32)
        order = np.argsort(-(similarity + 2.0 * overlap + kind_bonus), kind="stable")
        facts = {rows[i][4].lower() for i in order[:k] if rows[i][2] == "fact"}
        kept = itertools.islice((i for i in order if rows[i][2] != "turn" or not _restates(rows[i][4], facts)), k)
        return [Memory(*rows[i][:6]) for i in kept]


def _restates(turn: str, facts: set[str]) -> bool:
    """Whether a remembered turn states facts (by the rules) and all of them are in ``facts`` (lower case)."""
    told = extract_facts(turn.removeprefix(TURN_PREFIX))
    return bool(told) and all(fact.text.lower() in facts for fact in told)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error (the connection is in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, traceback) -> None:  # type: ignore[no-untyped-def]
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
