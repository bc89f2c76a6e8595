from __future__ import annotations

import json

import pytest
from safetensors.torch import save_file

from difflib_models.cli.app import main


def _run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(args)
    return int(exc.value.code)


@pytest.fixture(scope="module")
def acts_file(tmp_path_factory):
    from difflib_models.crosscoder.synthetic import make_synthetic_pairs

    path = tmp_path_factory.mktemp("cli") / "acts.safetensors"
    save_file({"acts": make_synthetic_pairs(32, n_tokens=6000, seed=2).acts.contiguous()}, str(path))
    return path


def test_train_then_analyze(tmp_path, acts_file, capsys):
    out = tmp_path / "run"
    code = _run(["crosscoder", "train", "--acts", str(acts_file), "--out", str(out), "--dict-size", "64",
                 "--k", "2", "--steps", "300", "--batch-size", "256", "--lr", "3e-3"])
    assert code == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["config"]["dict_size"] == 64 and summary["metrics"]["fve"] > 0.8
    assert (out / "crosscoder" / "crosscoder.safetensors").is_file()
    capsys.readouterr()
    report = tmp_path / "analysis.json"
    code = _run(["crosscoder", "analyze", "--crosscoder", str(out), "--acts", str(acts_file), "--out", str(report),
                 "--ft-only", "0.85"])
    assert code == 0
    res = json.loads(report.read_text())
    assert res["thresholds"]["ft_only"] == 0.85
    assert res["class_counts"]["ft_only"] >= 1 and res["class_counts"]["shared"] >= 10
    ft = [item["latent"] for item in res["latents"] if item["class"] == "ft_only"]
    assert sorted(int(k) for k in res["latent_scaling"]["latents"]) == sorted(ft)
    assert res["report_section"]["latent_classes"] == res["class_counts"]
    printed = json.loads(capsys.readouterr().out)
    assert printed["class_counts"] == res["class_counts"]


def test_train_dedicated_feature_crosscoder(tmp_path, acts_file, capsys):
    out = tmp_path / "dfc"
    code = _run(["crosscoder", "train", "--acts", str(acts_file), "--out", str(out), "--dict-size", "64",
                 "--activation", "l1", "--l1-coeff", "0.5", "--steps", "200", "--batch-size", "256", "--lr", "3e-3",
                 "--exclusive-latents", "4", "--exclusive-penalty", "1.5"])
    assert code == 0
    cfg = json.loads((out / "train_summary.json").read_text())["config"]
    assert (cfg["exclusive_latents"], cfg["exclusive_penalty"]) == (4, 1.5)
    capsys.readouterr()
    report = tmp_path / "dfc.json"
    assert _run(["crosscoder", "analyze", "--crosscoder", str(out), "--acts", str(acts_file),
                 "--out", str(report)]) == 0
    rows = json.loads(report.read_text())["latents"]
    assert [rows[j]["dedicated"] for j in (0, 3, 4, 7, 8)] == [0, 0, 1, 1, None]
    assert all(rows[j]["r"] == 0.0 for j in range(4)) and all(rows[j]["r"] == 1.0 for j in range(4, 8))
    # more dedicated latents than half the dictionary: usage error naming the option's field
    assert _run(["crosscoder", "train", "--acts", str(acts_file), "--out", str(tmp_path / "bad"), "--dict-size",
                 "64", "--exclusive-latents", "32"]) == 2


def test_usage_errors_exit_2(tmp_path, acts_file):
    assert _run(["crosscoder", "train", "--acts", str(acts_file), "--out", str(tmp_path / "x"),
                 "--activation", "relu"]) == 2
    assert _run(["crosscoder", "train", "--acts", str(tmp_path / "missing.safetensors"),
                 "--out", str(tmp_path / "y")]) == 2
    assert _run(["crosscoder", "analyze", "--crosscoder", str(tmp_path / "nothing"), "--acts", str(acts_file),
                 "--out", str(tmp_path / "a.json")]) == 2


def test_train_logs_to_mlflow_sqlite(tmp_path, acts_file, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    assert _run(["crosscoder", "train", "--acts", str(acts_file), "--out", str(out), "--dict-size", "64", "--k", "2",
                 "--steps", "40", "--batch-size", "256", "--lr", "3e-3", "--mlflow", uri]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("difflib-models")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["difflib.command"] == "crosscoder"
    assert run.data.params["dict_size"] == "64" and run.data.params["activation"] == "batchtopk"
    assert run.data.metrics["eval/fve"] == pytest.approx(summary["metrics"]["fve"])
    fve_steps = client.get_metric_history(run.info.run_id, "train/fve")
    assert len(fve_steps) >= 2 and fve_steps[-1].step > fve_steps[0].step  # per-step metrics via Lightning
    assert "train_summary.json" in [a.path for a in client.list_artifacts(run.info.run_id)]
