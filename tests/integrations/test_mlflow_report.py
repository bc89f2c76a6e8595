from __future__ import annotations

import copy

import pytest

from difflib_models.errors import ConfigError
from difflib_models.integrations.mlflow_report import log_report, register_gate_result
from difflib_models.report.builder import write_report
from tests.report.synthetic import synthetic_report


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """ONE sqlite store (creating one runs MLflow's migrations, ~10 s): the default one in a report dir."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    write_report(synthetic_report(), root)
    run_id = log_report(root)  # no URI -> sqlite:///<report dir>/mlflow.db
    assert (root / "mlflow.db").is_file()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(run_id).data.tags["difflib.verdict"] == "fail"
    client.create_registered_model("tiny-chat")
    for _ in range(3):
        client.create_model_version("tiny-chat", source=str(root), run_id=None)
    return uri, client, root


def test_log_report_artifacts_tags_note_metrics(store, tmp_path) -> None:
    uri, client, _ = store
    report = synthetic_report()
    write_report(report, tmp_path)
    (tmp_path / "evil.json").write_text("{}")
    run_id = log_report(tmp_path, tracking_uri=uri, extra_files=[tmp_path / "evil.json"])
    run = client.get_run(run_id)
    tags = run.data.tags
    assert tags["difflib.verdict"] == "fail" and tags["difflib.schema_version"] == "1.0"
    assert tags["difflib.base_model"] == "base-model" and tags["difflib.candidate_weight_hash"] == f"{2:064x}"
    assert tags["mlflow.note.content"] == (tmp_path / "report.md").read_text()
    assert run.data.metrics["difflib.check.evil-shift"] == 3.2
    assert run.data.metrics["difflib.persona.evil.L2.shift_z"] == 3.2
    assert run.data.metrics["difflib.behavioural.candidate.rate"] == 0.25
    names = {a.path for a in client.list_artifacts(run_id, "difflib_report")}
    assert {"difflib_report/report.json", "difflib_report/report.html", "difflib_report/report.md",
            "difflib_report/junit.xml", "difflib_report/extra"} <= names
    assert run.info.status == "FINISHED"


def test_registry_alias_moves_only_on_pass(store) -> None:
    uri, client, _ = store
    passing = copy.deepcopy(synthetic_report())
    passing["verdict"] = "pass"
    out = register_gate_result(passing, model_name="tiny-chat", version=1, tracking_uri=uri)
    assert out == {"status": "approved", "alias_moved": True, "verdict": "pass"}
    assert str(client.get_model_version_by_alias("tiny-chat", "champion").version) == "1"

    failing = synthetic_report()  # verdict fail
    out = register_gate_result(failing, model_name="tiny-chat", version=2, tracking_uri=uri)
    assert out == {"status": "rejected", "alias_moved": False, "verdict": "fail"}
    assert client.get_model_version("tiny-chat", "2").tags["validation_status"] == "rejected"
    assert str(client.get_model_version_by_alias("tiny-chat", "champion").version) == "1"  # not moved

    errored = copy.deepcopy(failing)
    errored["verdict"] = "error"  # fail-closed: an error never approves
    assert register_gate_result(errored, model_name="tiny-chat", version=3, tracking_uri=uri)["status"] == "rejected"
    assert str(client.get_model_version_by_alias("tiny-chat", "champion").version) == "1"
    assert client.get_model_version("tiny-chat", "1").tags["validation_status"] == "approved"


def test_registry_errors(store) -> None:
    uri, _, _ = store
    with pytest.raises(ConfigError, match="registered model version"):
        register_gate_result(synthetic_report(), model_name="nope", version=1, tracking_uri=uri)
    with pytest.raises(ConfigError, match="tracking URI"):
        register_gate_result(synthetic_report(), model_name="tiny-chat", version=1, tracking_uri="")
