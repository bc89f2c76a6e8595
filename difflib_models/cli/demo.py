"""`difflib-models demo`: the whole product on the embedded SmolLM2-135M-Instruct in one command.

Exit codes: 0 the demo finished and the verdicts are the expected ones (inducing model FAILS the gate, control
PASSES); 1 it finished but a verdict differs from the expectation (printed, never hidden); 2 bad options; 3 a
runtime error.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import typer

from difflib_models.cli.options import JSON_HELP, deprecated, emit_json, say, stdout_for_results
from difflib_models.demo.config import DemoConfig


@contextlib.contextmanager
def _stage_lines() -> Iterator[None]:
    """The demo's stage and fine-tune progress lines ("stage train_inducing: done in 31.2 s", "fine-tune inducing:
    step 20/40, 31 s") on stderr at any verbosity: the demo takes minutes and should show it is moving."""
    log = logging.getLogger("difflib_models.demo")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("demo %(asctime)s %(message)s", datefmt="%H:%M:%S"))
    handler.setLevel(logging.INFO)
    old_level, old_propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(min(logging.INFO, log.getEffectiveLevel()))
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        log.propagate = old_propagate


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)


@stdout_for_results
def demo_command(
    quick: bool = typer.Option(True, "--quick/--full",
                               help="--quick (default): small CPU profile, a few minutes. --full: bigger, uses CUDA "
                                    "when available."),
    out: Path = typer.Option(Path("difflib-demo"), "--out", "-o",
                             help="Output directory (re-running with the same options reuses finished stages)."),
    tracking_uri: str | None = typer.Option(None, "--mlflow-uri",
                                            help="MLflow tracking URI (default: sqlite:///OUT/mlflow.db)."),
    control: bool = typer.Option(True, "--control/--no-control",
                                 help="Also fine-tune on the matched neutral set and use it as the control."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of training, data order and null directions."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP + " The document is the summary."),
    tracking_uri_old: str | None = typer.Option(None, "--tracking-uri", hidden=True),
) -> None:
    """Fine-tune SmolLM2 with LoRA on a sycophancy-inducing chat set (and a neutral control) with the callbacks
    attached, diff each adapter against the base, gate it with the default policy and print the verdicts."""
    from difflib_models.demo.runner import format_summary, run_demo

    tracking_uri = deprecated(tracking_uri, tracking_uri_old, old_flag="--tracking-uri", new_flag="--mlflow-uri")
    config = DemoConfig(out=out, profile="quick" if quick else "full", tracking_uri=tracking_uri, control=control,
                        seed=seed)
    with _stage_lines():
        result = run_demo(config)
    if json_out:
        emit_json(result.summary)
    else:
        for line in format_summary(result):
            say(line)
    raise typer.Exit(0 if result.as_expected else 1)
