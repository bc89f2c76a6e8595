"""Entry point of the `difflib-models` CLI.

Sub-command modules register themselves through a ``register(app)`` function; they are listed in
``_COMMAND_MODULES`` and imported only when present, so the CLI starts fast.

Exit codes: 0 success / gate pass, 1 gate failed, 2 usage or configuration error, 3 runtime error.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import typer

from difflib_models._version import __version__

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3

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
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"difflib-models {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-v info, -vv debug)."),
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, mapping library errors to exit codes (2 config, 3 runtime; never an accidental 1)."""
    from difflib_models.errors import ConfigError, DifflibError

    try:
        # standalone_mode=False: click returns typer.Exit's code instead of raising it
        rc = app(args=argv, standalone_mode=False)
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
