"""Counters every step keeps: what came in, what went out, and why anything did not."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepStats:
    """Counts for one run of one step.

    ``skipped`` is for records a rule removed on purpose (not HTML, over_18, …); ``bad`` is for records
    that were malformed (corrupt compression, invalid JSON, broken WARC record). Only ``bad`` counts
    towards the bad-record share that asset checks guard.
    """

    records_in: int = 0
    records_out: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    bad: Counter[str] = field(default_factory=Counter)
    #: Input bytes read, and those skipped past damage (see :attr:`estimated_lost_records`).
    input_bytes: int = 0
    lost_bytes: int = 0

    @property
    def bad_total(self) -> int:
        return sum(self.bad.values())

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def estimated_lost_records(self) -> int:
        """Records estimated to sit in the bytes skipped past damage, at the density of the bytes that were read."""
        readable = self.input_bytes - self.lost_bytes
        if not self.lost_bytes or readable <= 0:
            return 0 if not self.lost_bytes else max(1, self.records_in)
        return round(self.lost_bytes * self.records_in / readable)

    @property
    def bad_share(self) -> float:
        """Malformed and lost records over all records (0.0 for an empty input): a corrupt frame that hides
        half a dump counts as half, not as one record."""
        lost = self.estimated_lost_records
        seen = self.records_in + lost
        return (self.bad_total + lost) / seen if seen else 0.0

    def merge(self, other: StepStats) -> None:
        self.records_in += other.records_in
        self.records_out += other.records_out
        self.skipped.update(other.skipped)
        self.bad.update(other.bad)
        self.input_bytes += other.input_bytes
        self.lost_bytes += other.lost_bytes

    def reasons_markdown(self) -> str:
        """A markdown table of every reason a record did not make it, most frequent first."""
        rows = [("bad", reason, n) for reason, n in self.bad.items()]
        rows += [("skipped", reason, n) for reason, n in self.skipped.items()]
        if not rows:
            return "_nothing skipped_"
        rows.sort(key=lambda row: (-row[2], row[0], row[1]))
        lines = ["| kind | reason | records |", "| --- | --- | ---: |"]
        lines += [f"| {kind} | {reason} | {n:,} |" for kind, reason, n in rows]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "records_in": self.records_in,
            "records_out": self.records_out,
            "skipped": dict(self.skipped),
            "bad": dict(self.bad),
            "input_bytes": self.input_bytes,
            "lost_bytes": self.lost_bytes,
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> StepStats:
        return cls(
            records_in=int(payload.get("records_in", 0)),
            records_out=int(payload.get("records_out", 0)),
            skipped=Counter(payload.get("skipped", {})),
            bad=Counter(payload.get("bad", {})),
            input_bytes=int(payload.get("input_bytes", 0)),
            lost_bytes=int(payload.get("lost_bytes", 0)),
        )


@dataclass
class FilterStats:
    """One filter's work in a run, datatrove-style: documents it judged, how many it dropped, time it took."""

    seen: int = 0
    dropped: int = 0
    seconds: float = 0.0

    def record(self, dropped: bool, seconds: float) -> None:
        self.seen += 1
        self.dropped += int(dropped)
        self.seconds += seconds

    @property
    def docs_per_second(self) -> float:
        return self.seen / self.seconds if self.seconds > 0 else 0.0
