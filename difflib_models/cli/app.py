"""Entry point of the `difflib-models` CLI.

Sub-command modules register themselves through a ``register(app)`` function; they are listed in
``_COMMAND_MODULES`` and imported only when present, so the CLI starts fast.

Exit codes: 0 success / gate pass, 1 gate failed, 2 usage or configuration error, 3 runtime error.

Output: logs go to stderr through one root handler (Lightning's loggers propagate to it instead of printing on
their own, so each line appears once); third-party tips, FutureWarnings and DeprecationWarnings are filtered while
the CLI runs (``-vv`` shows them).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import typer

from difflib_models._version import __version__
from difflib_models.cli.options import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE
from difflib_models.errors import ConfigError, DifflibError

_COMMAND_MODULES = [
    "difflib_models.cli.snapshot",  # snapshot, inspect
    "difflib_models.cli.diff",  # diff
    "difflib_models.cli.crosscoder",  # crosscoder train|analyze
    "difflib_models.cli.persona",  # persona extract|validate|filter|steer
    "difflib_models.cli.report",  # report, gate
    "difflib_models.cli.demo",  # demo
]

app = typer.Typer(
    name="difflib-models",
    help="See what fine-tuning changed inside a model, and stop a bad model before release.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


_METAVARS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "file": "FILE", "directory": "DIR",
             "int range": "INTEGER", "float range": "FLOAT"}


def _plain_metavars() -> None:
    """Help without type placeholders: flags show no value (typer prints ``--help <bool>``), values a click-style
    metavar (TEXT, PATH, INTEGER) and choices their values."""
    from typer.core import TyperOption

    if getattr(TyperOption.display_type_rich, "_difflib_models", False):
        return
    original = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: object) -> str | None:
        if self.metavar is not None:
            return self.metavar
        if self.is_flag or self.count:
            return None
        shown = original(self, ctx)  # type: ignore[arg-type]
        if shown is None:
            return None
        label = shown.removesuffix("...").strip("<>")
        many = shown.endswith("...") or label.startswith("list[")
        label = label.removeprefix("list[").removesuffix("]")
        if self.type_descriptor.is_choice:
            return f"[{label}]" + ("..." if many else "")
        return _METAVARS.get(label.lower(), label.upper()) + ("..." if many else "")

    display_type_rich._difflib_models = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_plain_metavars()


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"difflib-models {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-v info, -vv debug)."),
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if (ctx.invoked_subcommand in _LIGHTNING_COMMANDS and not _asks_for_help()
            and importlib.util.find_spec("lightning") is not None):
        importlib.import_module("lightning")  # it adds its own console handler on import: tame it now (below)
    configure_logging(level)
    if verbose >= 2:
        warnings.resetwarnings()


_LIGHTNING_COMMANDS = {"diff", "crosscoder", "demo"}
_ARGV: list[str] | None = None
"""The arguments :func:`main` is running (click does not show the sub-command's arguments to the root callback)."""


def _asks_for_help() -> bool:
    """The command line asks for help (nothing will run: no reason to import Lightning); False when unknown."""
    if _ARGV is None:
        return False
    return "--help" in (_ARGV[: _ARGV.index("--")] if "--" in _ARGV else _ARGV)


_THIRD_PARTY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning")


class _NoTips(logging.Filter):
    """Drops third-party advertising lines ("💡 Tip: ... try installing litmodels")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


def configure_logging(level: int, stream: Any = None) -> None:
    """One stderr handler on the root logger (replacing the one a previous call added); Lightning's own handlers
    removed so its lines propagate to it and appear once."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_difflib_models", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler._difflib_models = True  # type: ignore[attr-defined]
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if level > logging.DEBUG:
        handler.addFilter(_NoTips())
    root.addHandler(handler)
    root.setLevel(level)
    for name in _THIRD_PARTY_LOGGERS:
        third = logging.getLogger(name)
        for h in list(third.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                third.removeHandler(h)
        third.propagate = True
        third.setLevel(logging.NOTSET if level <= logging.INFO else logging.WARNING)


def _cli_warning_filters() -> Callable[[], None]:
    """Noise a CLI user cannot act on: library deprecations and third-party advice. Returns the undo for the
    transformers verbosity (the warning filters are undone by the caller's catch_warnings)."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*(litlogger|litmodels|LitLogger).*")
    if "transformers" not in sys.modules:
        # importing transformers costs ~0.8 s, so `--help` must not; it reads this variable when it is imported
        had = os.environ.get("TRANSFORMERS_VERBOSITY")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

        def undo_env() -> None:
            if had is not None:  # the user's own setting: untouched
                return
            os.environ.pop("TRANSFORMERS_VERBOSITY", None)
            if "transformers" in sys.modules:  # imported during the command: back to its default
                from transformers.utils import logging as hf_logging  # noqa: PLC0415

                hf_logging.set_verbosity(hf_logging.WARNING)

        return undo_env
    from transformers.utils import logging as hf_logging  # noqa: PLC0415 - already imported

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    return lambda: hf_logging.set_verbosity(before)


def _legacy_argv(argv: list[str]) -> list[str]:
    """``gate --json PATH`` (write report.json there) is now ``gate --json-out PATH``; ``--json`` is the flag
    that prints the JSON document. Rewrites the old form for one release, with a warning."""
    if not argv or argv[0] != "gate":
        return argv
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--json" and not out[i + 1].startswith("-"):
            typer.echo("warning: gate --json PATH is deprecated and goes in the next release; use --json-out PATH",
                       err=True)
            out[i] = "--json-out"
    return out


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, mapping library errors to exit codes (2 config, 3 runtime; never an accidental 1)."""
    global _ARGV
    argv = _legacy_argv(list(sys.argv[1:] if argv is None else argv))
    _ARGV = argv
    try:
        with warnings.catch_warnings():
            undo = _cli_warning_filters()
            try:
                # standalone_mode=False: click returns typer.Exit's code instead of raising it
                rc = app(args=argv, standalone_mode=False, prog_name="difflib-models")
            finally:
                undo()
    except typer.Exit as exc:  # explicit exits keep their code
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except DifflibError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_RUNTIME)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - an unexpected crash is a runtime error, never a gate failure
        import click

        usage, abort = [click.exceptions.UsageError], [click.exceptions.Abort]
        try:  # typer >= 0.2x vendors its own click copy with distinct exception classes
            from typer import _click as _tclick

            usage.append(_tclick.exceptions.UsageError)
            abort.append(getattr(_tclick.exceptions, "Abort", click.exceptions.Abort))
        except (ImportError, AttributeError):
            pass
        if isinstance(exc, tuple(usage)):
            exc.show()
            sys.exit(EXIT_USAGE)
        if isinstance(exc, tuple(abort)):
            sys.exit(130)
        logging.getLogger("difflib_models").exception("unexpected error")
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_RUNTIME)
    sys.exit(rc if isinstance(rc, int) else EXIT_OK)
