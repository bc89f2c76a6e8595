"""MLflow for reports and release gates: artifacts, run tags, the run note, and model-registry gating.

- :func:`log_report` uploads report.json / report.html / report.md / junit.xml (plus any extra files such as
  persona vector files) to a run, sets the tags ``difflib.verdict``, ``difflib.schema_version``,
  ``difflib.base_model``, ``difflib.candidate_model`` (+ weight hashes), logs numeric check values and persona
  shifts as metrics under a prefix, and writes report.md into ``mlflow.note.content`` (rendered on the run page).
- :func:`register_gate_result` tags a registered model version with ``validation_status`` = approved | rejected and
  moves an alias (e.g. ``champion``) to it ONLY when the gate passed. Stages are deprecated; tags + aliases are
  the registry's gating mechanism and work offline on sqlite.

The tracking URI is always explicit (default ``sqlite:///<report dir>/mlflow.db``); the fluent ``mlflow.*`` API is
never used (it would open or reuse a global run). ``mlflow`` is imported lazily.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from difflib_models.errors import ConfigError, bad_value
from difflib_models.files import read_text
from difflib_models.integrations.mlflow import (
    COMMAND_TAG,
    EXPERIMENT,
    default_tracking_uri,
    get_or_create_experiment,
    open_tracking_client,
)
from difflib_models.report.behaviour_records import BehaviouralSection
from difflib_models.report.builder import FILENAMES, load_report
from difflib_models.report.records import GateVerdict, PersonaSection

log = logging.getLogger(__name__)

NOTE_TAG = "mlflow.note.content"
PASSING = ("pass", "warn")
_METRIC_SAFE = re.compile(r"[^A-Za-z0-9_./ -]")


def _client(tracking_uri: str) -> Any:
    return open_tracking_client(tracking_uri)


def default_uri(report_dir: str | Path) -> str:
    return default_tracking_uri(report_dir)


def _metrics(report: Mapping[str, Any], prefix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in GateVerdict.from_report(report).checks:
        if c.value is not None:
            out[f"{prefix}.check.{_METRIC_SAFE.sub('_', c.id)}"] = float(c.value)
    persona = PersonaSection.from_report(report)
    for t in persona.traits if persona is not None else ():
        for key in ("shift", "shift_z", "shift_frac", "null_percentile", "excess_z"):
            value = t.value(key)
            if value is not None:
                out[f"{prefix}.persona.{_METRIC_SAFE.sub('_', t.trait)}.L{t.layer}.{key}"] = value
    behavioural = BehaviouralSection.from_report(report)
    for name, b in behavioural.models.items() if behavioural is not None else ():
        out[f"{prefix}.behavioural.{_METRIC_SAFE.sub('_', name)}.rate"] = float(b.rate)
    return out


def report_tags(report: Mapping[str, Any], prefix: str = "difflib") -> dict[str, str]:
    """Run tags that summarise a report (verdict, schema version, model ids and hashes)."""
    tags = {f"{prefix}.verdict": str(report.get("verdict")), f"{prefix}.schema_version": str(report["schema_version"]),
            f"{prefix}.kind": str(report.get("kind"))}
    for role in ("base", "candidate", "control"):
        m = (report.get("models") or {}).get(role)
        if m:
            tags[f"{prefix}.{role}_model"] = str(m.get("name"))[:5000]
            tags[f"{prefix}.{role}_weight_hash"] = str(m.get("weight_hash"))
            if m.get("adapter_hash"):
                tags[f"{prefix}.{role}_adapter_hash"] = str(m["adapter_hash"])
    return tags


def log_report(
    report_dir: str | Path,
    *,
    tracking_uri: str | None = None,
    run_id: str | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    command: str = "gate",
    extra_files: Iterable[str | Path] = (),
    artifact_path: str = "difflib_report",
    prefix: str = "difflib",
) -> str:
    """Log a written report directory to MLflow; returns the run id (a new run unless ``run_id`` is given).

    A new run goes to the one experiment ``difflib-models`` (or ``experiment``) with the tag
    ``difflib.command = command``; on a sqlite store its artifacts live beside the database, one folder per run."""
    report_dir = Path(report_dir)
    report = load_report(report_dir)
    uri = tracking_uri or default_uri(report_dir)
    client = _client(uri)
    own_run = run_id is None
    if own_run:
        # artifacts of a new experiment on a sqlite store go beside the database (MLflow's default is ./mlruns in
        # the current directory)
        exp_id = get_or_create_experiment(client, uri, experiment or EXPERIMENT)
        run_id = client.create_run(exp_id, run_name=run_name or f"{command}-{report.get('verdict')}",
                                   tags={COMMAND_TAG: command}).info.run_id
    try:
        for key in ("json", "html", "md", "junit"):
            path = report_dir / FILENAMES[key]
            if path.is_file():
                client.log_artifact(run_id, str(path), artifact_path)
        for f in extra_files:
            if Path(f).is_file():
                client.log_artifact(run_id, str(f), f"{artifact_path}/extra")
            else:
                log.warning("not uploading %s to MLflow: not a file", f)
        for key, value in report_tags(report, prefix).items():
            client.set_tag(run_id, key, value)
        md = report_dir / FILENAMES["md"]
        if md.is_file():
            client.set_tag(run_id, NOTE_TAG, read_text(md, what="report.md"))
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in _metrics(report, prefix).items()]
        if metrics:
            client.log_batch(run_id, metrics=metrics)
    except Exception:
        if own_run:
            client.set_terminated(run_id, status="FAILED")
        raise
    if own_run:
        client.set_terminated(run_id, status="FINISHED")
    log.info("logged report %s to MLflow run %s (%s)", report_dir, run_id, uri)
    return str(run_id)


def register_gate_result(
    report: Mapping[str, Any] | str | Path,
    *,
    model_name: str,
    version: str | int,
    tracking_uri: str,
    alias: str | None = "champion",
    status_tag: str = "validation_status",
    approve_on_warn: bool = True,
) -> dict[str, Any]:
    """Tag a registered model version approved/rejected from the gate verdict; move ``alias`` only on a pass.

    Returns ``{"status": "approved"|"rejected", "alias_moved": bool, "verdict": ...}``.
    """
    if not isinstance(report, Mapping):
        report = load_report(report)
    if not tracking_uri:
        raise ConfigError(bad_value("tracking_uri", tracking_uri, "an explicit MLflow tracking URI",
                                    "e.g. sqlite:///path/mlflow.db"))
    client = _client(tracking_uri)
    try:
        client.get_model_version(model_name, str(version))
    except Exception as exc:  # noqa: BLE001 - mlflow raises its own MlflowException
        raise ConfigError(bad_value("model version", f"{model_name}/{version}", "a registered model version",
                                    f"register it first ({type(exc).__name__}: {exc})")) from exc
    verdict = str(report.get("verdict"))
    passed = verdict == "pass" or (approve_on_warn and verdict == "warn")
    status = "approved" if passed else "rejected"
    client.set_model_version_tag(model_name, str(version), status_tag, status)
    client.set_model_version_tag(model_name, str(version), "difflib.verdict", verdict)
    client.set_model_version_tag(model_name, str(version), "difflib.schema_version", str(report["schema_version"]))
    moved = False
    if passed and alias:
        client.set_registered_model_alias(model_name, alias, str(version))
        moved = True
    log.info("model %s v%s: %s (verdict %s)%s", model_name, version, status, verdict,
             f", alias {alias!r} moved" if moved else "")
    return {"status": status, "alias_moved": moved, "verdict": verdict}
