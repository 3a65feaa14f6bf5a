"""The event log of a run: one JSON object per line in ``events.jsonl``.

Every record has ``event`` (its kind: ``train``, ``val``, ``epoch``, ``run_start``, ...),
``epoch`` and ``step`` where they apply, plus whatever fields the emitter adds (losses,
metrics, a method's own events such as an ASC matrix or a BMA decision). The loop owns the
file; methods emit through :meth:`EventLog.write`. On resume the log is truncated back to
the byte offset stored in the checkpoint, so a resumed run's log equals an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["EventLog", "read_events", "events_frame"]


def _jsonable(value: Any) -> Any:
    """Tensors / numpy values -> plain Python (non-finite floats -> None)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class EventLog:
    """Append-only JSON-lines writer, flushed after every record."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, event: str, **fields: Any) -> None:
        record = {"event": event, **{k: _jsonable(v) for k, v in fields.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def offset(self) -> int:
        """Current size in bytes (stored in checkpoints)."""
        self._file.flush()
        return self._file.tell()

    def truncate(self, offset: int) -> None:
        """Drop everything written after ``offset`` bytes (used on resume)."""
        self._file.flush()
        self._file.truncate(offset)
        self._file.seek(offset)

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


def read_events(path: str | Path, event: str | None = None) -> list[dict]:
    """Records of ``events.jsonl`` (a run folder or the file), optionally of one kind."""
    path = Path(path)
    if path.is_dir():
        path = path / "events.jsonl"
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                if event is None or record["event"] == event:
                    records.append(record)
    return records


def events_frame(path: str | Path, event: str):
    """The records of one kind as a pandas DataFrame, nested dicts flattened with '.'."""
    import pandas as pd

    return pd.json_normalize(read_events(path, event))
