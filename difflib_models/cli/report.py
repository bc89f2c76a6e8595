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

from difflib_models.cli.options import EXIT_OK, JSON_HELP, emit_json, say, stdout_for_results
from difflib_models.errors import ConfigError, bad_value


def register(app: typer.Typer) -> None:
    app.command("report", help="Re-render report.html / report.md / junit.xml from an existing report.json.")(report)
    app.command("gate", help="Release gate: compare a candidate with its base under a YAML policy.")(gate)


@stdout_for_results
def report(
    src: Path = typer.Option(..., "--from", help="directory holding report.json (or the file itself)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="where to write the renderings (default: next to it)"),
    formats: str = typer.Option("html,md,junit", "--formats", help="comma-separated: html, md, junit"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " Keys: written (rendering -> path)."),
) -> None:
    # imported when the command runs (it imports torch), so `--help` stays fast
    from difflib_models.report.builder import rerender

    written = rerender(src, out, renderings=[f.strip() for f in formats.split(",") if f.strip()])
    if as_json:
        emit_json({"written": {key: str(path) for key, path in sorted(written.items())}})
        raise typer.Exit(EXIT_OK)
    for key, path in sorted(written.items()):
        say(f"{key}: {path}")
    raise typer.Exit(EXIT_OK)


@stdout_for_results
def gate(
    candidate: str = typer.Option(..., "--candidate", help="peft adapter dir, merged model dir, GGUF or hub id"),
    base: str | None = typer.Option(None, "--base", help="base model spec (default: the adapter's base)"),
    out: Path = typer.Option(Path("gate-out"), "--out", "-o", help="output directory (report.json/html/md, junit.xml)"),
    policy: Path | None = typer.Option(None, "--policy", help="YAML policy (default: the shipped default policy)"),
    control: str | None = typer.Option(None, "--control", help="matched control fine-tune: the same recipe and data "
                                       "format without the trait (an unmatched one leaves its own recipe in the "
                                       "excess checks)"),
    vectors: list[Path] = typer.Option([], "--vectors", help="persona vector file(s) of the base; else extracted"),
    no_cache: bool = typer.Option(False, "--no-cache", help="re-extract persona vectors and re-measure the base "
                                  "instead of reusing the per-base cache (DIFFLIB_MODELS_CACHE)"),
    diff: Path | None = typer.Option(None, "--diff", help="diff.json from `difflib-models diff` to merge"),
    crosscoder: Path | None = typer.Option(None, "--crosscoder", help="trained crosscoder folder (ft-only latents)"),
    data_filter: Path | None = typer.Option(None, "--data-filter", help="data-filter summary JSON"),
    monitor: Path | None = typer.Option(None, "--monitor", help="persona-monitor time series JSON"),
    judge_url: str | None = typer.Option(None, "--judge-url", help="OpenAI-compatible endpoint (judge mode)"),
    judge_model: str = typer.Option("gpt-4o-mini", "--judge-model", help="model name at the judge endpoint"),
    em_questions: Path | None = typer.Option(None, "--em-questions", help="EM evaluation YAML (judge mode)"),
    junit: Path | None = typer.Option(None, "--junit", help="also write junit.xml here"),
    json_out: Path | None = typer.Option(None, "--json-out", help="also write report.json here"),
    md: Path | None = typer.Option(None, "--md", help="also write report.md here (e.g. $GITHUB_STEP_SUMMARY)"),
    fail_exit_code: int = typer.Option(1, "--fail-exit-code", help="exit code when the gate fails"),
    batch_size: int = typer.Option(8, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    mlflow: bool = typer.Option(False, "--mlflow", help="log the report to MLflow (artifacts, tags, run note)"),
    mlflow_uri: str | None = typer.Option(None, "--mlflow-uri", help="tracking URI (default sqlite:///OUT/mlflow.db)"),
    mlflow_experiment: str = typer.Option("difflib-models", "--mlflow-experiment", help="MLflow experiment name"),
    registered_model: str | None = typer.Option(None, "--registered-model", help="registry model name to gate"),
    model_version: str | None = typer.Option(None, "--model-version", help="its version to tag approved/rejected"),
    alias: str = typer.Option("champion", "--alias", help="alias moved to the version ONLY on a pass"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " The document is report.json (plus 'paths', "
                                 "'exit_code' and 'mlflow' when logged)."),
) -> None:
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
    outcome = result.outcome
    say(err=as_json, text=f"verdict: {outcome.verdict.upper()} ({outcome.reason})")
    for c in outcome.checks:
        value = "—" if c.value is None else f"{c.value:.4g}"
        say(err=as_json, text=f"  [{c.status:>7}] {c.id}: {c.metric} = {value} (pass if {c.comparator} "
                   f"{c.threshold or 0:g})")
        if c.status in ("warn", "error") and c.details.message:
            say(err=as_json, text=f"            {c.details.message}")
    say(err=as_json, text=f"report: {result.paths['html']}")
    mlflow_info: dict[str, object] = {}
    if mlflow or mlflow_uri or registered_model:
        from difflib_models.integrations.mlflow_report import default_uri, log_report, register_gate_result

        uri = mlflow_uri or default_uri(out)
        extra_files = [*vectors, *sorted((out / "vectors").glob("*"))]
        run_id = log_report(out, tracking_uri=uri, experiment=mlflow_experiment, extra_files=extra_files)
        say(err=as_json, text=f"mlflow: run {run_id} at {uri}")
        mlflow_info.update(run_id=run_id, tracking_uri=uri)
        if registered_model and model_version:
            reg = register_gate_result(r, model_name=registered_model, version=model_version, tracking_uri=uri,
                                       alias=alias)
            mlflow_info["registry"] = reg
            moved = f", alias {alias!r} -> v{model_version}" if reg["alias_moved"] else ", alias not moved"
            say(err=as_json, text=f"mlflow: {registered_model} v{model_version} {reg['status']}{moved}")
    if as_json:
        emit_json({**r, "paths": {k: str(v) for k, v in result.paths.items()}, "exit_code": result.exit_code,
                   **({"mlflow": mlflow_info} if mlflow_info else {})})
    raise typer.Exit(result.exit_code)
