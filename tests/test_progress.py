"""Progress bars only on a terminal (or when forced); transformers' own bars follow the same switch."""

from __future__ import annotations

import io
import sys

import pytest

from difflib_models.progress import progress, progress_enabled, sync_third_party_bars


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_on_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIFFLIB_MODELS_NO_PROGRESS", raising=False)
    monkeypatch.delenv("DIFFLIB_MODELS_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log file / CI: no bar, no carriage returns
    assert not progress_enabled()
    assert list(progress(range(3), desc="x")) == [0, 1, 2] and sys.stderr.getvalue() == ""
    monkeypatch.setattr(sys, "stderr", _Tty())
    assert progress_enabled()
    assert list(progress(range(3), desc="bar-on-tty")) == [0, 1, 2] and "bar-on-tty" in sys.stderr.getvalue()
    monkeypatch.setenv("DIFFLIB_MODELS_NO_PROGRESS", "1")  # the switch wins over a terminal
    assert not progress_enabled()
    monkeypatch.delenv("DIFFLIB_MODELS_NO_PROGRESS")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setenv("DIFFLIB_MODELS_PROGRESS", "1")  # forced on without a terminal
    assert progress_enabled()


def test_transformers_bars_follow_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.utils import logging as hf_logging

    monkeypatch.delenv("DIFFLIB_MODELS_PROGRESS", raising=False)
    try:
        monkeypatch.setenv("DIFFLIB_MODELS_NO_PROGRESS", "1")
        sync_third_party_bars()
        assert not hf_logging.is_progress_bar_enabled()
        monkeypatch.delenv("DIFFLIB_MODELS_NO_PROGRESS")
        monkeypatch.setattr(sys, "stderr", _Tty())
        sync_third_party_bars()
        assert hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()
