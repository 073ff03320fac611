"""Streaming, atomic Parquet output: rows go out in batches, the file appears only when complete."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rosie_pipeline.atomic import temp_sibling


class ParquetSink:
    """Append rows (dicts) to a Parquet file without holding the whole file in memory.

    Use as a context manager: on a clean exit the temporary file is renamed into place; on an
    exception it is deleted, so readers never see a half-written file.
    """

    def __init__(self, path: Path, schema: pa.Schema, batch_rows: int = 2_000) -> None:
        self.path = path
        self.schema = schema
        self.batch_rows = batch_rows
        self.rows_written = 0
        self._pending: list[dict[str, Any]] = []
        self._tmp = temp_sibling(path)
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> ParquetSink:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
        return self

    def write(self, row: dict[str, Any]) -> None:
        self._pending.append(row)
        if len(self._pending) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        assert self._writer is not None, "ParquetSink used outside its context"
        self._writer.write_table(pa.Table.from_pylist(self._pending, schema=self.schema))
        self.rows_written += len(self._pending)
        self._pending.clear()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._flush()
        finally:
            if self._writer is not None:
                self._writer.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def iter_rows(path: Path, columns: list[str] | None = None, batch_rows: int = 1_000) -> Iterator[dict[str, Any]]:
    """Rows of a Parquet file as dicts, a batch at a time (never the whole file in memory)."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns):
        yield from batch.to_pylist()
