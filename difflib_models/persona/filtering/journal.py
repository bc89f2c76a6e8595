"""A resumable record of a long filter run: per-row scores saved chunk by chunk, so a crash loses one chunk at most.

:func:`~difflib_models.persona.filtering.scoring.filter_samples` with ``journal=DIR`` scores the rows in chunks of
``FilterConfig.checkpoint_rows`` and writes each finished chunk atomically to ``DIR/chunk-<key>-<n>.json``: the
scored rows' digests (sha256 of the token ids the model reads, so a changed tokenizer, template or ``max_length``
is a different row) with their ``proj_train`` / ``proj_base``. A re-run with the same ``key`` (model weights,
vector, layer, method, generation length) reads every chunk of that key and scores only the rows not in them; the
numbers of a resumed run equal an uninterrupted one up to batch-composition float noise (~1e-6). Chunks of another
key are ignored (a changed vector re-scores everything). ``difflib-models persona filter`` keeps its journal in
``OUT/.partial`` and removes it once the outputs are written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from difflib_models.io import atomic_write_json
from difflib_models.persona.traits.chat import EncodedPair
from difflib_models.stages import fingerprint

log = logging.getLogger(__name__)

__all__ = ["ScoreJournal", "pair_digest"]


def pair_digest(pair: EncodedPair) -> str:
    """sha256 (24 hex) of what the model reads for one row: its token ids and where the response starts."""
    h = hashlib.sha256(f"{pair.prompt_len}:".encode())
    h.update(np.asarray(pair.ids, dtype=np.int64).tobytes())
    return h.hexdigest()[:24]


class ScoreJournal:
    """Chunk files of one scoring key under ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path, key: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.key = fingerprint(dict(key))

    def _chunks(self) -> list[Path]:
        return sorted(self.root.glob(f"chunk-{self.key}-*.json")) if self.root.is_dir() else []

    def load(self) -> dict[str, tuple[float, float]]:
        """digest -> (proj_train, proj_base) of every readable chunk of this key (a damaged chunk is skipped and its
        rows are scored again)."""
        done: dict[str, tuple[float, float]] = {}
        for path in self._chunks():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("key") != self.key:
                    continue
                for digest, train, base in data["rows"]:
                    done[str(digest)] = (float(train), float(base))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("filter journal: skipping unreadable chunk %s (%s)", path, exc)
        return done

    def score(self, pairs: Sequence[EncodedPair], fn: Callable[[list[EncodedPair], str], tuple[Any, Any]],
              chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """``(proj_train, proj_base)`` for ``pairs``: rows already in the journal are read, the rest are scored by
        ``fn(chunk_pairs, label)`` ``chunk_rows`` at a time, each chunk saved before the next starts."""
        digests = [pair_digest(p) for p in pairs]
        done = self.load()
        todo = [i for i, d in enumerate(digests) if d not in done]
        if len(todo) < len(pairs):
            log.info("filter journal %s: %d of %d rows already scored, scoring %d", self.root,
                     len(pairs) - len(todo), len(pairs), len(todo))
        n_chunks = -(-len(todo) // chunk_rows)
        # after the highest chunk number present (a chunk deleted by hand must not make a new one overwrite another)
        first = 1 + max((int(c.stem.rsplit("-", 1)[1]) for c in self._chunks() if c.stem.rsplit("-", 1)[1].isdigit()),
                        default=-1)
        for c, start in enumerate(range(0, len(todo), chunk_rows)):
            idx = todo[start : start + chunk_rows]
            train, base = fn([pairs[i] for i in idx], f"chunk {c + 1}/{n_chunks}")
            rows = [[digests[i], float(train[j]), float(base[j])] for j, i in enumerate(idx)]
            atomic_write_json(self.root / f"chunk-{self.key}-{first + c:06d}.json",
                              {"key": self.key, "rows": rows}, indent=0)
            done.update({d: (t, b) for d, t, b in rows})
        return (np.array([done[d][0] for d in digests], dtype=np.float64),
                np.array([done[d][1] for d in digests], dtype=np.float64))

    @staticmethod
    def remove(root: str | Path) -> None:
        """Delete a journal directory (after the run's outputs are written)."""
        shutil.rmtree(root, ignore_errors=True)
