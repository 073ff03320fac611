"""What readers yield: rows for an output table, or a record that did not make it and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Bytes of a rejected record kept in quarantine (enough to see what went wrong, bounded for 10 MB lines).
SAMPLE_BYTES = 2_000


@dataclass(frozen=True)
class Row:
    """One output row for ``table`` (``documents``, or a side table such as ``dialogue_candidates``).

    ``consumed`` is how many input records the row accounts for (a Reddit thread: all its records; a
    side-table row derived from records already counted: 0), so input counts stay true.
    """

    table: str
    values: dict[str, Any]
    consumed: int = 1


@dataclass(frozen=True)
class Rejected:
    """A record that is not kept.

    ``bad`` marks malformed input (it goes to quarantine and counts towards the bad-record share);
    otherwise a rule skipped it on purpose (not HTML, ``over_18``, …) and it is only counted.
    """

    reason: str
    bad: bool
    offset: int | None = None
    detail: str = ""
    sample: bytes | str | None = None
    #: The input file, when a reader reads several (a Reddit month is an RS_ and an RC_ dump).
    file: str | None = None
    #: Input bytes skipped to get past the damage (a corrupt zstd frame can hide half a dump behind one
    #: reason); the step turns them into an estimate of the records lost.
    lost_bytes: int = 0

    def quarantine_entry(self, source_file: str) -> dict[str, Any]:
        sample = self.sample
        if isinstance(sample, bytes):
            sample = sample[:SAMPLE_BYTES].decode("utf-8", errors="backslashreplace")
        elif isinstance(sample, str):
            sample = sample[:SAMPLE_BYTES]
        return {
            "reason": self.reason,
            "file": self.file or source_file,
            "offset": self.offset,
            "detail": self.detail,
            "lost_bytes": self.lost_bytes,
            "sample": sample,
        }


def bad(reason: str, offset: int | None = None, detail: str = "", sample: bytes | str | None = None,
        lost_bytes: int = 0) -> Rejected:
    return Rejected(reason=reason, bad=True, offset=offset, detail=detail, sample=sample, lost_bytes=lost_bytes)


def skipped(reason: str) -> Rejected:
    return Rejected(reason=reason, bad=False)
