"""CLI logging: one line per event (Lightning's loggers propagate to the single root handler), tips dropped, and
the FutureWarnings / DeprecationWarnings of libraries filtered while the CLI runs."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator

import pytest

from difflib_models.cli.app import configure_logging, main


@pytest.fixture()
def stderr() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    loggers = [logging.getLogger(name) for name in ("lightning", "lightning.pytorch")]
    states = [(list(lg.handlers), lg.propagate, lg.level) for lg in loggers]
    # what importing Lightning does: `lightning` gets its own console handler (and still propagates to the root);
    # `lightning.pytorch`, imported before any root handler existed, gets one too and stops propagating
    loggers[0].addHandler(logging.StreamHandler(buf))
    loggers[1].addHandler(logging.StreamHandler(buf))
    loggers[1].propagate = False
    yield buf
    root.handlers[:] = before[0]
    root.setLevel(before[1])
    for lg, (handlers, propagate, level) in zip(loggers, states, strict=True):
        lg.handlers[:], lg.propagate = handlers, propagate
        lg.setLevel(level)


def test_each_lightning_line_appears_once(stderr: io.StringIO) -> None:
    configure_logging(logging.INFO, stderr)
    configure_logging(logging.INFO, stderr)  # a second CLI call in the same process adds no second handler
    logging.getLogger("lightning.pytorch").info("GPU available: False, used: False")
    logging.getLogger("lightning.pytorch").info("💡 Tip: For seamless cloud uploads and versioning, try litmodels")
    logging.getLogger("difflib_models.x").info("ours")
    text = stderr.getvalue()
    assert text.count("GPU available: False") == 1 and "Tip:" not in text and text.count("ours") == 1


def test_info_lines_hidden_without_verbose(stderr: io.StringIO) -> None:
    configure_logging(logging.WARNING, stderr)
    logging.getLogger("lightning.pytorch").info("GPU available: False, used: False")
    logging.getLogger("lightning.pytorch").warning("a real warning")
    assert stderr.getvalue().count("a real warning") == 1 and "GPU available" not in stderr.getvalue()


def test_library_future_warnings_filtered_in_the_cli(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import difflib_models.report.builder as builder

    def noisy_rerender(*args: object, **kwargs: object) -> dict[str, str]:
        warnings.warn("`x` is deprecated and will be removed in v6", FutureWarning, stacklevel=1)
        warnings.warn("old API", DeprecationWarning, stacklevel=1)
        return {}

    monkeypatch.setattr(builder, "rerender", noisy_rerender)  # the command imports it when it runs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SystemExit) as exc:
            main(["report", "--from", "anything"])
    assert exc.value.code == 0
    assert not [w for w in caught if issubclass(w.category, FutureWarning | DeprecationWarning)]
