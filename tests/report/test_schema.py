from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from difflib_models.errors import ConfigError
from difflib_models.report.builder import load_report, merge_diff, new_report, rerender, write_report
from difflib_models.report.schema import (
    SCHEMA_VERSION,
    ReportSchemaError,
    load_schema,
    schema_path,
    validate_report,
)
from tests.report.synthetic import synthetic_report


def test_schema_file_is_valid_draft_2020_12() -> None:
    schema = json.loads(schema_path().read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"]["pattern"] == "^1\\.[0-9]+$"


def test_new_report_validates_and_has_provenance() -> None:
    report = new_report("gate", hook_points={"block_path": "model.layers", "n_layers": 3})
    validate_report(report)
    assert report["schema_version"] == SCHEMA_VERSION
    assert report["hook_points"]["names"] == {f"blocks.{i}": f"model.layers.{i}" for i in range(3)}
    assert "after decoder block i" in report["layer_convention"]
    libs = report["tool"]["libraries"]
    assert libs["torch"] and libs["transformers"] and libs["peft"] and libs["python"]


def test_synthetic_report_validates_against_published_schema() -> None:
    report = synthetic_report()
    jsonschema.validate(report, load_schema())  # the file itself, as an external tool would
    validate_report(report)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.__setitem__("verdict", "maybe"),
        lambda r: r["checks"][0].__setitem__("status", "passed"),
        lambda r: r["checks"][0].__setitem__("source", "vibes"),
        lambda r: r["checks"][0].pop("threshold"),
        lambda r: r.__setitem__("schema_version", "2.0"),
        lambda r: r.__setitem__("unexpected", 1),
        lambda r: r["behavioural"]["models"]["base"].__setitem__("rate", 1.5),
        lambda r: r["models"]["base"].pop("weight_hash"),
    ],
)
def test_invalid_reports_are_rejected(mutate) -> None:
    report = copy.deepcopy(synthetic_report())
    mutate(report)
    with pytest.raises(ReportSchemaError):
        validate_report(report)


def test_write_load_rerender_roundtrip(tmp_path) -> None:
    report = synthetic_report()
    paths = write_report(report, tmp_path / "a", paths={"md": tmp_path / "summary.md"})
    assert set(paths) == {"json", "html", "md", "junit", "md_copy"}
    loaded = load_report(tmp_path / "a")
    assert loaded == json.loads(json.dumps(report))
    (tmp_path / "a" / "report.html").unlink()
    out = rerender(tmp_path / "a", tmp_path / "b")
    assert out["html"].read_text() == (tmp_path / "b" / "report.html").read_text()
    assert (tmp_path / "summary.md").read_text() == (tmp_path / "a" / "report.md").read_text()


def test_load_report_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="report.json"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(ConfigError, match="valid JSON"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps({"schema_version": "1.0"}))
    with pytest.raises(ReportSchemaError):
        load_report(tmp_path)


def test_merge_diff_copies_sections(tmp_path) -> None:
    diff = {"drift": {"layers": [{"layer": 0, "kl_mean": 0.5}]}, "adl": {"tokens": ["a"]},
            "hook_points": {"block_path": "model.layers", "n_layers": 1}, "seeds": {"crosscoder": 3}}
    (tmp_path / "diff.json").write_text(json.dumps(diff))
    report = merge_diff(new_report("diff"), tmp_path)
    validate_report(report)
    assert report["drift"]["layers"][0]["kl_mean"] == 0.5
    assert report["seeds"] == {"crosscoder": 3}


def test_monitor_section_from_persona_monitor_json() -> None:
    from difflib_models.report.builder import monitor_section

    data = {"kind": "persona_monitor", "traits": {"evil": {"layer": 15}, "syc": {"layer": 12}},
            "series": [{"step": 10, "traits": {"evil": {"shift_z": 0.5}, "syc": {"shift_z": None}}},
                       {"step": 20, "traits": {"evil": {"shift_z": 2.5, "shift_frac": 0.3}, "syc": {"shift_z": 0.1}}}],
            "status": "warn", "first_warn_step": {"evil": 20}}
    sec = monitor_section(data)
    evil = next(s for s in sec["series"] if s["trait"] == "evil")
    # every thresholded metric is kept, aligned with the steps (shift_frac first seen at step 20)
    assert evil == {"trait": "evil", "layer": 15, "metric": "shift_z", "steps": [10, 20], "values": [0.5, 2.5],
                    "metrics": {"shift_z": [0.5, 2.5], "shift_frac": [None, 0.3]}}
    assert next(s for s in sec["series"] if s["trait"] == "syc")["values"] == [None, 0.1]
    assert sec["status"] == "warn"
    flat = monitor_section([{"step": 1, "trait": "evil", "shift_z": 1.0}])
    assert flat["series"][0]["steps"] == [1] and monitor_section(sec)["series"] == sec["series"]
    report = new_report("monitor")
    report["monitor"] = sec
    validate_report(report)
    with pytest.raises(ConfigError):
        monitor_section("nope")


def _pipeline_diff() -> dict:
    """A diff.json in the diffing pipeline's format (difflib_models.diff/1)."""
    ident = {"name": "m", "source": "hf_dir", "path": None, "weight_hash": "a" * 64}
    return {
        "format": "difflib_models.diff/1", "identities": {"base": ident, "finetuned": {**ident, "weight_hash": "b" * 64}},
        "layers": [1], "hook_points": {"block_path": "model.layers", "n_layers": 2},
        "texts": {"source": "generic", "n": 12, "sha256": "c" * 64},
        "weight_deltas": {"total_rel": 0.1}, "adl": {"k": 5, "layers": {"1": {"top_tokens": ["<script>"]}}},
        "drift": {"layers": [{"layer": 1, "n_tokens": 100, "mean_diff_norm": 0.5, "cka": 0.9}],
                  "next_token_kl": {"mean": 0.01}},
        "crosscoder": {
            "status": "trained", "metrics": {"fve": 0.7}, "class_counts": {"shared": 3, "ft_only": 1},
            "r_histogram": {"edges": [0.0, 0.5, 1.0], "counts": [2, 2]},
            "latent_scaling": {"n_ft_only": 1, "n_artifacts": 0},
            "top_ft_only_latents": [{"latent": 7, "r": 0.97, "class": "ft_only", "fires": 3,
                                     "latent_scaling": {"artifact": False},
                                     "examples": [{"activation": 2.0, "seq": 0, "pos": 1, "text": "a <script>",
                                                   "tokens": ["a", " <script>"], "index": 1}]}],
        },
    }


def test_merge_pipeline_diff_json(tmp_path) -> None:
    from difflib_models.report.html import render_html

    (tmp_path / "diff.json").write_text(json.dumps(_pipeline_diff()))
    report = merge_diff(new_report("diff"), tmp_path)
    validate_report(report)
    assert report["models"]["candidate"]["weight_hash"] == "b" * 64
    assert report["drift"]["layers"][0]["cka"] == 0.9 and report["weights"] == {"total_rel": 0.1}
    lat = report["crosscoder"]["top_latents"][0]
    assert lat == {"latent": 7, "class": "ft_only", "fires": 3, "latent_scaling": {"artifact": False},
                   "rel_norm": 0.97, "flags": ["latent_scaling_ok"],
                   "contexts": [{"tokens": ["a", " <script>"], "index": 1, "activation": 2.0}]}
    assert report["crosscoder"]["latent_classes"] == {"shared": 3, "ft_only": 1}
    assert report["data"][0]["sha256"] == "c" * 64
    dedicated = _pipeline_diff()
    dedicated["crosscoder"]["top_ft_only_latents"][0]["dedicated"] = 1
    assert merge_diff(new_report("diff"), dedicated)["crosscoder"]["top_latents"][0]["flags"] == [
        "latent_scaling_ok", "dedicated"]
    page = render_html(report)
    assert "<mark> &lt;script&gt;</mark>" in page and "<script>" not in page
    assert page.count("data:image/png;base64,") == 2  # drift + r histogram
    skipped = _pipeline_diff()
    skipped["crosscoder"] = {"status": "skipped", "reason": "disabled"}
    report = merge_diff(new_report("diff"), skipped)
    assert report["crosscoder"] is None and "crosscoder skipped: disabled" in report["notes"]


def test_rerender_builds_report_from_diff_folder(tmp_path) -> None:
    (tmp_path / "diff.json").write_text(json.dumps(_pipeline_diff()))
    paths = rerender(tmp_path)
    report = load_report(paths["json"])
    assert report["kind"] == "diff" and report["crosscoder"]["top_latents"][0]["latent"] == 7
    assert (tmp_path / "report.html").is_file() and (tmp_path / "junit.xml").is_file()
