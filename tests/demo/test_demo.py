"""The demo end to end on CPU (quick profile): verdicts, report files, the MLflow run and a faster re-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from difflib_models.demo.config import INDUCING, NEUTRAL, NO_HEADROOM, PROFILES, TRAIT, DemoConfig
from difflib_models.errors import ConfigError


def test_config_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--profile"):
        DemoConfig(out=tmp_path, profile="huge")
    with pytest.raises(ConfigError, match="overrides"):
        DemoConfig(out=tmp_path, overrides={"no_such_field": 1})
    with pytest.raises(ConfigError, match="steps"):
        DemoConfig(out=tmp_path, overrides={"steps": 0})
    for items in (8, 13):  # below the default policy's behavioural.min_scored (10); odd: unbalanced option orders
        with pytest.raises(ConfigError, match="gate_behaviour_items"):
            DemoConfig(out=tmp_path, overrides={"gate_behaviour_items": items})
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="--out"):
        DemoConfig(out=tmp_path / "file")
    cfg = DemoConfig(out=tmp_path, overrides={"steps": 3})
    assert cfg.resolved_profile().steps == 3 and cfg.resolved_device() == "cpu"
    assert cfg.resolved_profile().gate_behaviour_items == 12 and PROFILES["full"].gate_behaviour_items == 24
    assert cfg.resolved_tracking_uri() == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"  # inside --out


@pytest.mark.slow
@pytest.mark.smollm2
def test_quick_demo_verdicts_outputs_mlflow_and_rerun(smollm2_dir: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from difflib_models.demo.runner import run_demo

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = DemoConfig(out=tmp_path / "demo", tracking_uri=uri)  # the quick profile (~210 s on 2 idle cores)
    first = run_demo(config)
    s = first.summary
    gates = json.dumps({n: r["gate"] for n, r in s["runs"].items()}, indent=1, default=str)
    assert first.verdicts[INDUCING] == "fail" and s["runs"][INDUCING]["gate"]["exit_code"] == 1, gates
    # the control gets through the gate (pass, or warn: warnings do not fail under the default policy)
    assert first.verdicts[NEUTRAL] in ("pass", "warn") and s["runs"][NEUTRAL]["gate"]["exit_code"] == 0, gates
    assert first.as_expected and not any(first.reused.values())
    # the neutral gate reuses the inducing gate's behavioural scores of the neutral fine-tune (in-process memo); the
    # base's come from the per-base gate cache in the second gate (and in the first when an earlier run cached them)
    assert s["behaviour_memo"]["hits"] == 1 and s["behaviour_memo"]["misses"] in (2, 3), s["behaviour_memo"]

    inducing, control = s["runs"][INDUCING], s["runs"][NEUTRAL]
    syc_i, syc_c = inducing["gate"]["persona"]["sycophancy"], control["gate"]["persona"]["sycophancy"]
    assert syc_i["shift_z"] > syc_c["shift_z"] and syc_i["excess_z"] == pytest.approx(
        syc_i["shift_z"] - syc_c["shift_z"], abs=1e-9)
    assert "fail" in inducing["gate"]["checks"].values() and "fail" not in control["gate"]["checks"].values()
    # the gate's DETECTION claim (docs/results.md), a candidate changed by fine-tuning against a matched control:
    # the inducing LoRA fails on a check of the trait it was trained toward: its own answers move along the
    # (paired) sycophancy vector by more than 2 standard deviations of the null directions' shifts, and the
    # neutral-answer control (same recipe) fails no sycophancy check and stays inside that band
    syc_checks = [cid for cid in inducing["gate"]["checks"] if cid.startswith(f"{TRAIT}-")]
    assert inducing["gate"]["checks"][f"{TRAIT}-response-null-z"] == "fail", gates
    assert all(control["gate"]["checks"][cid] in ("pass", "warn", "skipped") for cid in syc_checks), gates
    # hallucination is read on its response questions, where the base leaves room (headroom 0.69 >= 0.25), so no
    # check passes without evidence; the neutral run's short direct answers move toward confident fabrication past
    # the calibrated line (0.164 in bench_gate_halluc_position.json for the same data at the suite's recipe): the
    # warn-only position check flags it, which is why it is a warn (docs/gate-policy.md)
    assert control["gate"]["checks"]["hallucination-response-position-shift"] == "warn", gates
    assert control["gate"]["warnings"]["hallucination-response-position-shift"].startswith(
        "persona.response_position_shift = "), gates
    assert control["gate"]["checks"]["hallucination-response-null-z"] == "pass", gates
    assert NO_HEADROOM not in control["gate"]["warnings"].values(), gates
    rows = {name: next(r for r in json.loads(Path(run["gate"]["paths"]["json"]).read_text())["persona"]["traits"]
                       if r["trait"] == TRAIT) for name, run in ((INDUCING, inducing), (NEUTRAL, control))}
    assert rows[INDUCING]["vector_mode"] == "paired"
    assert rows[INDUCING]["response_null_z"] >= 2.0 > rows[NEUTRAL]["response_null_z"], gates
    assert syc_i["response_null_z"] == rows[INDUCING]["response_null_z"]  # the summary carries the deciding value
    from difflib_models.demo.runner import format_summary

    printed = "\n".join(format_summary(first))
    assert f"{TRAIT} answers {syc_i['response_null_z']:.3g} null sd" in printed, printed
    assert NO_HEADROOM not in printed, printed
    # the training-time monitor saw the same direction of travel, and with the gate's lines on the model's own
    # answers (policy="default", responses=True) it fails the inducing run live and not the control
    assert inducing["train"]["monitor_last"]["shift_z"] > control["train"]["monitor_last"]["shift_z"]
    assert inducing["train"]["monitor_status"] == "fail" != control["train"]["monitor_status"], s
    assert inducing["train"]["monitor_last"]["response_null_z"] >= 2.0 > control["train"]["monitor_last"][
        "response_null_z"]
    for name in (INDUCING, NEUTRAL):  # every training row was scored (report mode: nothing dropped)
        assert s["data_filter"][name]["n"] == s["profile"]["train_rows"]
    profile = s["profile"]
    for run in (inducing, control):
        for kind in ("json", "html", "md", "junit"):
            assert Path(run["gate"]["paths"][kind]).is_file()
        assert "<html" in Path(run["gate"]["paths"]["html"]).read_text(encoding="utf-8").lower()
        report = json.loads(Path(run["gate"]["paths"]["json"]).read_text(encoding="utf-8"))
        assert report["verdict"] == run["gate"]["verdict"]
        assert report["crosscoder"]["latent_classes"] and report["drift"]["layers"]
        assert report["monitor"] is not None and report["data_filter"]["n"] == profile["train_rows"]
        expected_steps = sorted({0, profile["steps"], *range(profile["snapshot_every"], profile["steps"] + 1,
                                                             profile["snapshot_every"])})
        assert run["train"]["snapshot_steps"] == expected_steps
        assert Path(run["train"]["adapter"], "adapter_config.json").is_file()

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("difflib-models")
    assert exp is not None
    artifact_dirs = []
    for run in (inducing, control):
        mlrun = client.get_run(run["train"]["run_id"])
        assert mlrun.data.tags["difflib.verdict"] == run["gate"]["verdict"]
        assert mlrun.data.tags["difflib.command"] == "demo"
        artifact_dirs.append(Path(mlrun.info.artifact_uri.removeprefix("file://")))
    # each run's artifacts in its own folder beside mlflow.db, neither inside the other run's output folder
    assert artifact_dirs[0] != artifact_dirs[1]
    for d in artifact_dirs:
        assert d.is_relative_to((tmp_path / "mlartifacts").resolve()), d
        assert (d / "difflib_models" / "persona_monitor").is_dir()
        assert "train_loss" in mlrun.data.metrics
        assert any(k.startswith("persona/sycophancy/") for k in mlrun.data.metrics)
    assert len(client.search_runs([exp.experiment_id])) == 2

    second = run_demo(config)
    assert second.verdicts == first.verdicts
    assert all(second.reused.values()) and set(second.reused) == set(first.reused)
    assert second.summary["behaviour_memo"] == {"hits": 0, "misses": 0}  # no gate ran again
    assert second.summary["timings_s"]["total"] < 0.5 * s["timings_s"]["total"]
    assert len(client.search_runs([exp.experiment_id])) == 2  # no new MLflow run on a re-run
