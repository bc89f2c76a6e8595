"""CLI: ``difflib-models report --from DIR`` (re-render) and ``difflib-models gate`` (release gate).

Exit codes of ``gate``: 0 pass (warnings allowed unless the policy is strict), 1 gate failed (or
``--fail-exit-code``), 2 usage or configuration error (malformed policy, bad option), 3 runtime error (a model
could not load, the judge is unreachable, a check could not be evaluated or the signal is too weak).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from difflib_models.cli.app import EXIT_OK


def register(app: typer.Typer) -> None:
    app.command("report", help="Re-render report.html / report.md / junit.xml from an existing report.json.")(report)
    app.command("gate", help="Release gate: compare a candidate with its base under a YAML policy.")(gate)


def report(
    src: Path = typer.Option(..., "--from", help="directory holding report.json (or the file itself)"),
    out: Path | None = typer.Option(None, "--out", help="where to write the renderings (default: next to it)"),
    formats: str = typer.Option("html,md,junit", "--formats", help="comma-separated: html, md, junit"),
) -> None:
    from difflib_models.report.builder import rerender

    written = rerender(src, out, renderings=[f.strip() for f in formats.split(",") if f.strip()])
    for key, path in sorted(written.items()):
        typer.echo(f"{key}: {path}")
    raise typer.Exit(EXIT_OK)


def gate(
    candidate: str = typer.Option(..., "--candidate", help="peft adapter dir, merged model dir, GGUF or hub id"),
    base: str | None = typer.Option(None, "--base", help="base model spec (default: the adapter's base)"),
    out: Path = typer.Option(Path("gate-out"), "--out", help="output directory (report.json/html/md, junit.xml)"),
    policy: Path | None = typer.Option(None, "--policy", help="YAML policy (default: the shipped default policy)"),
    control: str | None = typer.Option(None, "--control", help="matched control fine-tune (same format, benign)"),
    vectors: list[Path] = typer.Option([], "--vectors", help="persona vector file(s) of the base; else extracted"),
    no_cache: bool = typer.Option(False, "--no-cache", help="re-extract persona vectors instead of reusing the "
                                  "per-base cache (DIFFLIB_MODELS_CACHE)"),
    diff: Path | None = typer.Option(None, "--diff", help="diff.json from `difflib-models diff` to merge"),
    crosscoder: Path | None = typer.Option(None, "--crosscoder", help="trained crosscoder folder (ft-only latents)"),
    data_filter: Path | None = typer.Option(None, "--data-filter", help="data-filter summary JSON"),
    monitor: Path | None = typer.Option(None, "--monitor", help="persona-monitor time series JSON"),
    judge_url: str | None = typer.Option(None, "--judge-url", help="OpenAI-compatible endpoint (judge mode)"),
    judge_model: str = typer.Option("gpt-4o-mini", "--judge-model", help="model name at the judge endpoint"),
    em_questions: Path | None = typer.Option(None, "--em-questions", help="EM evaluation YAML (judge mode)"),
    junit: Path | None = typer.Option(None, "--junit", help="also write junit.xml here"),
    json_out: Path | None = typer.Option(None, "--json", help="also write report.json here"),
    md: Path | None = typer.Option(None, "--md", help="also write report.md here (e.g. $GITHUB_STEP_SUMMARY)"),
    fail_exit_code: int = typer.Option(1, "--fail-exit-code", help="exit code when the gate fails"),
    batch_size: int = typer.Option(8, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    mlflow: bool = typer.Option(False, "--mlflow", help="log the report to MLflow (artifacts, tags, run note)"),
    mlflow_uri: str | None = typer.Option(None, "--mlflow-uri", help="tracking URI (default sqlite:///OUT/mlflow.db)"),
    mlflow_experiment: str = typer.Option("difflib-models", "--mlflow-experiment"),
    registered_model: str | None = typer.Option(None, "--registered-model", help="registry model name to gate"),
    model_version: str | None = typer.Option(None, "--model-version", help="its version to tag approved/rejected"),
    alias: str = typer.Option("champion", "--alias", help="alias moved to the version ONLY on a pass"),
) -> None:
    from difflib_models.errors import ConfigError, bad_value
    from difflib_models.gate.runner import GateConfig, run_gate

    if (registered_model is None) != (model_version is None):
        raise ConfigError(bad_value("--registered-model/--model-version", (registered_model, model_version),
                                    "both or neither"))
    extra = {k: v for k, v in (("junit", junit), ("json", json_out), ("md", md)) if v is not None}
    config = GateConfig(candidate=candidate, base=base, control=control, out=out, policy=policy, vectors=vectors,
                        diff=diff, crosscoder=crosscoder, data_filter=data_filter, monitor=monitor, judge_url=judge_url,
                        judge_model=judge_model, em_questions=em_questions, batch_size=batch_size, seed=seed,
                        fail_exit_code=fail_exit_code, extra_outputs=extra, use_cache=not no_cache,
                        command="difflib-models " + shlex.join(sys.argv[1:]))
    result = run_gate(config)
    r = result.report
    typer.echo(f"verdict: {r['verdict'].upper()} ({r['verdict_reason']})")
    for c in r["checks"]:
        value = "—" if c["value"] is None else f"{c['value']:.4g}"
        typer.echo(f"  [{c['status']:>7}] {c['id']}: {c['metric']} = {value} (pass if {c['comparator']} "
                   f"{c['threshold']:g})")
    typer.echo(f"report: {result.paths['html']}")
    if mlflow or mlflow_uri or registered_model:
        from difflib_models.integrations.mlflow_report import default_uri, log_report, register_gate_result

        uri = mlflow_uri or default_uri(out)
        extra_files = [*vectors, *sorted((out / "vectors").glob("*"))]
        run_id = log_report(out, tracking_uri=uri, experiment=mlflow_experiment, extra_files=extra_files)
        typer.echo(f"mlflow: run {run_id} at {uri}")
        if registered_model and model_version:
            reg = register_gate_result(r, model_name=registered_model, version=model_version, tracking_uri=uri,
                                       alias=alias)
            moved = f", alias {alias!r} -> v{model_version}" if reg["alias_moved"] else ", alias not moved"
            typer.echo(f"mlflow: {registered_model} v{model_version} {reg['status']}{moved}")
    raise typer.Exit(result.exit_code)
