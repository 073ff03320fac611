"""What people think of Rosie's replies, kept for preference tuning: every completion the server gave (the
conversation it answered, its alternatives, the model that wrote them) and every rating or kept alternative.

SQLite under ``$ROSIE_HOME/feedback/feedback.db``, one transaction per write in WAL mode with
``synchronous=FULL``: a write the server acknowledged survives a kill of the server or a power cut. Each
call opens its own connection, so threads share the store without sharing a connection.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosie_model.core.errors import RosieError

SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    model TEXT NOT NULL,
    user_id TEXT,
    messages TEXT NOT NULL,      -- JSON: the conversation the completion answered, as Rosie read it
    choices TEXT NOT NULL        -- JSON: [{index, text, emotion}], the alternatives ("swipes")
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    completion_id TEXT NOT NULL REFERENCES completions(id),
    choice INTEGER NOT NULL,     -- which alternative the feedback is about
    rating INTEGER,              -- +1 thumbs up, -1 thumbs down, NULL: only which alternative was kept
    kept INTEGER NOT NULL DEFAULT 0  -- 1: the user kept this alternative over the others
);
"""


class FeedbackError(RosieError):
    """Feedback the store cannot take (unknown completion, no such alternative); the message says which."""


@dataclass(frozen=True)
class Feedback:
    id: int
    completion_id: str
    choice: int
    rating: int | None
    kept: bool


class FeedbackStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    def add_completion(self, completion_id: str, model: str, user_id: str | None, messages: list[dict[str, Any]],
                       choices: list[dict[str, Any]]) -> None:
        with self._connect() as db:
            db.execute("INSERT INTO completions VALUES (?, ?, ?, ?, ?, ?)",
                       (completion_id, time.time(), model, user_id, json.dumps(messages), json.dumps(choices)))

    @contextmanager
    def _changing(self, completion_id: str) -> Iterator[tuple[sqlite3.Connection, list[dict[str, Any]]]]:
        """One write transaction about a stored completion: the connection and its alternatives; committed when
        the block ends, rolled back when it raises (FeedbackError for a completion the store never gave)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT choices FROM completions WHERE id = ?", (completion_id,)).fetchone()
                if row is None:
                    raise FeedbackError(f"no completion {completion_id!r}: feedback names the id a completion returned")
                yield db, json.loads(row[0])
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def add_choice(self, completion_id: str, choice: dict[str, Any]) -> int:
        """Add one more alternative to a completion (a regenerated reply, a "swipe"); its index."""
        with self._changing(completion_id) as (db, choices):
            choices.append({**choice, "index": len(choices)})
            db.execute("UPDATE completions SET choices = ? WHERE id = ?", (json.dumps(choices), completion_id))
        return len(choices) - 1

    def add_feedback(self, completion_id: str, choice: int, rating: int | None, kept: bool) -> Feedback:
        """Store one rating or kept alternative; FeedbackError if the completion or the alternative is unknown."""
        with self._changing(completion_id) as (db, choices):
            if not 0 <= choice < len(choices):
                raise FeedbackError(f"completion {completion_id!r} has {len(choices)} alternative(s); "
                                    f"choice {choice} is not one of them")
            cursor = db.execute("INSERT INTO feedback (created, completion_id, choice, rating, kept) VALUES (?, ?, ?, ?, ?)",
                                (time.time(), completion_id, choice, rating, int(kept)))
        return Feedback(int(cursor.lastrowid or 0), completion_id, choice, rating, kept)

    def feedback(self) -> list[Feedback]:
        with self._connect() as db:
            rows = db.execute("SELECT id, completion_id, choice, rating, kept FROM feedback ORDER BY id").fetchall()
        return [Feedback(i, c, n, r, bool(k)) for i, c, n, r, k in rows]

    def completion_ids(self) -> list[str]:
        """Every stored completion, oldest first."""
        with self._connect() as db:
            return [row[0] for row in db.execute("SELECT id FROM completions ORDER BY created, rowid")]

    def completion(self, completion_id: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute("SELECT model, user_id, messages, choices FROM completions WHERE id = ?",
                             (completion_id,)).fetchone()
        if row is None:
            return None
        return {"model": row[0], "user": row[1], "messages": json.loads(row[2]), "choices": json.loads(row[3])}
