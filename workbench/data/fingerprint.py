"""What a run was trained on, for its protocol card: the folder, the built-in generator's
settings (when the folder is built-in data) and a SHA-256 of its content.

The hash covers every file under the folder (sorted relative paths and their bytes), so
two folders hash alike exactly when they hold the same files. Built-in folders carry
``workbench-synthetic.json`` (kind, patients, seed), written by
:func:`workbench.data.synthetic.generate`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["BUILTIN_MANIFEST", "dataset_fingerprint", "content_sha256"]

BUILTIN_MANIFEST = "workbench-synthetic.json"
_CACHE: dict[tuple, str] = {}


def content_sha256(root: Path) -> str:
    """SHA-256 over the sorted relative paths and bytes of every file under ``root``.

    Cached within the process by each file's (path, size, mtime), so the cells of a grid on
    one folder read it once."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    key = (str(root),) + tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if key not in _CACHE:
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        _CACHE[key] = digest.hexdigest()
    return _CACHE[key]


def dataset_fingerprint(root: str | Path, fmt: str) -> dict[str, Any]:
    """``{"folder": absolute path, "format": fmt, "builtin": {kind, patients, seed, difficulty} | None,
    "sha256": content hash}``."""
    root = Path(root).resolve()
    builtin = None
    manifest = root / BUILTIN_MANIFEST
    if manifest.is_file():
        try:
            record = json.loads(manifest.read_text(encoding="utf-8"))
            builtin = {k: record[k] for k in ("kind", "patients", "seed")}
            # the difficulty preset; a custom difficulty has none, and data made before
            # difficulties existed is the ``clear`` preset
            difficulty = record.get("difficulty", {"preset": "clear"})
            builtin["difficulty"] = difficulty.get("preset") or "custom"
        except (ValueError, KeyError, TypeError):
            builtin = None  # not ours, or damaged: the hash still identifies the data
    return {"folder": str(root), "format": fmt, "builtin": builtin, "sha256": content_sha256(root)}
