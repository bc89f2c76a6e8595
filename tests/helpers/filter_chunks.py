"""Count (and optionally kill) the filter's chunk scoring, for the resume tests of the filter journal."""

from __future__ import annotations

import pytest

from difflib_models.persona.filtering import scoring

_SCORE_PAIRS = scoring._score_pairs


class KilledWhileScoring(RuntimeError):
    """Raised in place of a chunk's scoring: the process "dies" before that chunk is saved."""


def count_chunks(monkeypatch: pytest.MonkeyPatch, crash_after: int | None = None) -> list[int]:
    """Wrap the filter's chunk scorer: the returned list gets each call's row count; call ``crash_after + 1``
    raises :class:`KilledWhileScoring` instead of scoring."""
    calls: list[int] = []

    def wrapped(model, tokenizer, pairs, *args, **kwargs):
        if crash_after is not None and len(calls) == crash_after:
            raise KilledWhileScoring("killed while scoring")
        calls.append(len(pairs))
        return _SCORE_PAIRS(model, tokenizer, pairs, *args, **kwargs)

    monkeypatch.setattr(scoring, "_score_pairs", wrapped)
    return calls
