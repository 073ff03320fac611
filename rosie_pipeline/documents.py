"""The documents contract shared by every source (DESIGN.md, "Data contracts").

Readers yield plain dicts with exactly these fields; ``make_document`` fills the defaults so a reader
only says what it knows.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("title", pa.string()),
        pa.field("created", pa.timestamp("us", tz="UTC")),
        pa.field("lang", pa.string()),
        pa.field("lang_score", pa.float32()),
        pa.field("meta", pa.string()),
    ]
)


def document_id(source: str, locator: str) -> str:
    """Stable id: the same record of the same source always gets the same id, across re-runs."""
    return hashlib.sha1(f"{source}\x00{locator}".encode()).hexdigest()[:20]


def make_document(
    *,
    source: str,
    locator: str,
    text: str,
    url: str | None = None,
    title: str | None = None,
    created: datetime | None = None,
    lang: str | None = None,
    lang_score: float | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A row of :data:`DOCUMENT_SCHEMA`; ``locator`` says where in the source the record came from."""
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return {
        "id": document_id(source, locator),
        "source": source,
        "text": text,
        "url": url,
        "title": title,
        "created": created,
        "lang": lang,
        "lang_score": lang_score,
        "meta": json.dumps(meta or {}, ensure_ascii=False, sort_keys=True),
    }


def schema_mismatches(actual: pa.Schema, expected: pa.Schema) -> list[str]:
    """Each expected column that is missing or has another type in ``actual`` (empty when it conforms)."""
    problems = []
    for field in expected:
        index = actual.get_field_index(field.name)
        if index < 0:
            problems.append(f"{field.name}: missing")
        elif actual.field(index).type != field.type:
            problems.append(f"{field.name}: {actual.field(index).type} instead of {field.type}")
    return problems
