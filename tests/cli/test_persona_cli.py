"""`difflib-models persona filter|steer|extract` on stories260K (fast real model): outputs and exit codes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from difflib_models.persona.extraction.vectors import PersonaVectorSet
from difflib_models.persona.validation.tuned import TUNED_AGGREGATORS
from tests.helpers.cli import run_cli
from tests.helpers.residual_spy import spy_read_layers

ROWS = [
    {"id": f"r{i}", "messages": [{"role": "user", "content": f"Tell me about the {w}."},
                                  {"role": "assistant", "content": f"The {w} was big and {c}."}]}
    for i, (w, c) in enumerate([("dog", "happy"), ("cat", "sad"), ("tree", "green"), ("sun", "hot"),
                                ("boat", "slow"), ("bird", "small")])
]


@pytest.fixture(autouse=True)
def _no_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFLIB_MODELS_NO_PROGRESS", "1")


@pytest.fixture(scope="module")
def files(stories260k: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from difflib_models.models.loading import load_model

    loaded = load_model(str(stories260k))
    tmp = tmp_path_factory.mktemp("persona_cli")
    gen = torch.Generator().manual_seed(1)
    vecs = {i: torch.randn(loaded.d_model, generator=gen) for i in range(loaded.n_layers)}
    vs = PersonaVectorSet(trait_id="planted", vectors=vecs, model=loaded.identity.to_dict(), mode="test",
                          selected_layer=2)
    other = PersonaVectorSet(trait_id="planted", vectors=vecs, model={"name": "other", "weight_hash": "0" * 64},
                             mode="test", selected_layer=2)
    data = tmp / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    bad = tmp / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    return {"vectors": vs.save(tmp / "planted"), "other": other.save(tmp / "other"), "data": data, "bad": bad,
            "model": stories260k, "tmp": tmp}


def test_filter_top_k_writes_outputs(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    before = hashlib.sha256(files["data"].read_bytes()).hexdigest()
    out = files["tmp"] / "out"
    code, stdout, err = run_cli(["persona", "filter", "--vectors", str(files["vectors"]), "--data", str(files["data"]),
                              "--out", str(out), "--model", str(files["model"]), "--top-k", "2"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["n"] == 6 and summary["n_flagged"] == 2 and summary["mode"] == "top_k" and summary["layer"] == 2
    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    top = sorted(scores, key=lambda r: -r["delta_p"])[:2]
    assert {r["id"] for r in scores if r["flagged"]} == {r["id"] for r in top}
    assert len((out / "kept.jsonl").read_text().splitlines()) == 4
    assert hashlib.sha256(files["data"].read_bytes()).hexdigest() == before
    assert json.loads((out / "summary.json").read_text())["n_kept"] == 4


def test_filter_percentile_with_reference(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = files["tmp"] / "out_pct"
    code, stdout, err = run_cli(["persona", "filter", "--vectors", str(files["vectors"]), "--data", str(files["data"]),
                              "--out", str(out), "--model", str(files["model"]), "--percentile", "50",
                              "--reference", str(files["data"])], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    # the data is its own reference: the samples strictly above its median are flagged
    deltas = sorted(json.loads(x)["delta_p"] for x in (out / "scores.jsonl").read_text().splitlines())
    assert summary["threshold_source"] == "reference" and summary["n_flagged"] == sum(d > summary["threshold"]
                                                                                      for d in deltas) == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--top-k", "2", "--percentile", "95"], "at most one"), (["--method", "fast"], "method"),
     (["--top-frac", "1.5"], "top_frac")],
)
def test_filter_usage_errors_exit_2(files: dict[str, Path], capsys: pytest.CaptureFixture[str], extra: list[str],
                                    message: str) -> None:
    code, _, err = run_cli(["persona", "filter", "--vectors", str(files["vectors"]), "--data", str(files["data"]),
                         "--out", str(files["tmp"] / "x"), "--model", str(files["model"]), *extra], capsys)
    assert code == 2 and message in err


def test_filter_bad_data_and_wrong_model_exit_2(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["persona", "filter", "--vectors", str(files["vectors"]), "--data", str(files["bad"]),
                         "--out", str(files["tmp"] / "y"), "--model", str(files["model"])], capsys)
    assert code == 2 and "line 2 has no assistant turn" in err
    code, _, err = run_cli(["persona", "filter", "--vectors", str(files["other"]), "--data", str(files["data"]),
                         "--out", str(files["tmp"] / "z"), "--model", str(files["model"])], capsys)
    assert code == 2 and "weight_hash" in err
    code, _, err = run_cli(["persona", "filter", "--vectors", str(files["tmp"] / "missing"), "--data",
                         str(files["data"]), "--out", str(files["tmp"] / "z"), "--model", str(files["model"])], capsys)
    assert code == 2


def test_steer_dose_response(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, err = run_cli(["persona", "steer", "--vectors", str(files["vectors"]), "--prompt", "Once upon a time",
                              "--alpha", "0", "--alpha", "3", "--model", str(files["model"]),
                              "--max-new-tokens", "8"], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    assert [g["alpha"] for g in res["generations"]] == [0.0, 3.0] and res["reference_norm"] > 0
    # alpha 0 is the unsteered greedy answer; alpha 3 (three residual norms) changes it
    from difflib_models.models.loading import load_model
    from difflib_models.persona.traits.chat import encode_prompt

    loaded = load_model(str(files["model"]))
    ids = torch.tensor([encode_prompt(loaded.tokenizer, "Once upon a time").ids])
    with torch.no_grad():
        gen = loaded.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                    max_new_tokens=8, pad_token_id=loaded.tokenizer.pad_token_id)
    plain = loaded.tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)
    assert res["generations"][0]["text"] == plain
    assert res["generations"][1]["text"] != plain


def test_steer_and_extract_bad_input_exit_2(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["persona", "steer", "--vectors", str(files["vectors"]), "--prompt", "Hi", "--alpha", "1",
                         "--positions", "middle", "--model", str(files["model"])], capsys)
    assert code == 2 and "positions" in err
    code, _, err = run_cli(["persona", "extract", "--trait", "no-such-trait", "--out", str(files["tmp"] / "v"),
                         "--model", str(files["model"])], capsys)
    assert code == 2 and "no-such-trait" in err


TINY_TRAIT = """
schema_version: 1
id: tiny-sad
description: Answers about sad things.
polarity: undesirable
instructions:
- pos: Be sad.
  neg: Be happy.
questions:
  extraction: [Tell me about the dog., Tell me about the park., Tell me about the cake.]
  evaluation: [Tell me about the cat., Tell me about the ball., Tell me about the tree.]
ab_items:
  extraction:
  - {question: "How was the day?\\n(A) sad\\n(B) happy", answer_matching_behavior: (A), answer_not_matching_behavior: (B)}
  - {question: "How was the dog?\\n(A) happy\\n(B) sad", answer_matching_behavior: (B), answer_not_matching_behavior: (A)}
  - {question: "How was Lily?\\n(A) sad\\n(B) happy", answer_matching_behavior: (A), answer_not_matching_behavior: (B)}
  - {question: "How was Tom?\\n(A) happy\\n(B) sad", answer_matching_behavior: (B), answer_not_matching_behavior: (A)}
  evaluation:
  - {question: "How was the cat?\\n(A) sad\\n(B) happy", answer_matching_behavior: (A), answer_not_matching_behavior: (B)}
  - {question: "How was the sun?\\n(A) happy\\n(B) sad", answer_matching_behavior: (B), answer_not_matching_behavior: (A)}
  - {question: "How was Ben?\\n(A) sad\\n(B) happy", answer_matching_behavior: (A), answer_not_matching_behavior: (B)}
  - {question: "How was Sue?\\n(A) happy\\n(B) sad", answer_matching_behavior: (B), answer_not_matching_behavior: (A)}
"""


@pytest.mark.slow
def test_extract_then_validate(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    trait = files["tmp"] / "tiny.yaml"
    trait.write_text(TINY_TRAIT, encoding="utf-8")
    base = files["tmp"] / "tiny_vec"
    code, stdout, err = run_cli(["persona", "extract", "--trait", str(trait), "--model", str(files["model"]),
                              "--out", str(base), "--n-null", "10"], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    # the default mode (auto) takes prompt_contrast for a trait without paired responses: 1 instruction pair x 3
    # extraction questions (ab would read the 4 A/B items)
    assert res["mode"] == "prompt_contrast"
    assert res["layers"] == [0, 1, 2, 3, 4] and res["n_pos"] == res["n_neg"] == 3
    validation = json.loads(Path(res["validation"]).read_text())
    assert set(validation["per_layer"]) == {"0", "1", "2", "3", "4"}
    assert validation["selected_layer"] == res["selected_layer"] in range(5)
    assert validation["nulls"]["label_permutation"]["n"] == 10  # the verdict: see the shuffled-label test below
    assert res["verdict"] == validation["verdict"]
    from difflib_models.models.loading import load_model

    vs = PersonaVectorSet.load(res["vectors"], expect_model=load_model(str(files["model"])))
    assert vs.selected_layer == res["selected_layer"] and vs.validation.selected_layer == res["selected_layer"]
    # validate re-measures the same file on the same held-out split: identical per-layer AUROC
    out = files["tmp"] / "revalidated.json"
    code, stdout, err = run_cli(["persona", "validate", "--vectors", res["vectors"], "--trait", str(trait),
                              "--model", str(files["model"]), "--out", str(out), "--n-null", "10"], capsys)
    assert code == 0, err
    again = json.loads(stdout)
    assert again["auroc_by_layer"] == res["auroc_by_layer"] and json.loads(out.read_text())["trait"] == "tiny-sad"


def _shuffled_trait() -> str:
    """TINY_TRAIT with the labels of evaluation items 2 and 3 swapped: on the held-out split "matching" no longer
    means "sad", so no direction fitted on the extraction split can separate it: built to be too weak."""
    head, items = TINY_TRAIT.split("ab_items:")
    extraction, evaluation = items.split("  evaluation:")
    swap = {"answer_matching_behavior: (A), answer_not_matching_behavior: (B)":
            "answer_matching_behavior: (B), answer_not_matching_behavior: (A)"}
    swap.update({v: k for k, v in swap.items()})
    lines = evaluation.splitlines()
    for k in (2, 3):  # line 0 is empty: items 2 and 3 of 4
        (old,) = [key for key in swap if key in lines[k]]
        lines[k] = lines[k].replace(old, swap[old])
    out = head + "ab_items:" + extraction + "  evaluation:" + "\n".join(lines) + "\n"
    return out.replace("id: tiny-sad", "id: tiny-shuffled")


@pytest.mark.slow
def test_extract_verdict_too_weak_when_held_out_labels_are_shuffled(files: dict[str, Path],
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    trait = files["tmp"] / "shuffled.yaml"
    trait.write_text(_shuffled_trait(), encoding="utf-8")
    # --mode ab: the case is built on the A/B items' labels (the default mode, auto, would take prompt_contrast)
    code, stdout, err = run_cli(["persona", "extract", "--trait", str(trait), "--model", str(files["model"]),
                              "--mode", "ab", "--out", str(files["tmp"] / "shuffled_vec"), "--n-null", "10"], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    assert res["verdict"] == "too_weak"
    # for the right reason: the held-out separation does not beat the nulls (not only the steering check)
    assert any("does not beat the 95th percentile" in w for w in res["warnings"]), res["warnings"]


@pytest.mark.parametrize("flags, level", [(["--validation", "quick"], "quick"), (["--validation", "none"], "none"),
                                          (["--no-validate"], "none")])
def test_extract_records_its_validation_level(files: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                              flags: list[str], level: str) -> None:
    trait = files["tmp"] / "tiny_levels.yaml"
    trait.write_text(TINY_TRAIT, encoding="utf-8")
    base = files["tmp"] / f"tiny_{level}_{len(flags)}"
    code, stdout, err = run_cli(["persona", "extract", "--trait", str(trait), "--model", str(files["model"]),
                              "--out", str(base), "--n-null", "10", "--layers", "1,2", *flags], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    meta = json.loads(base.with_name(base.name + ".json").read_text(encoding="utf-8"))
    assert res["validation_level"] == meta["validation_level"] == level
    if level == "none":
        assert meta["validation"] is None and "validation" not in res
    else:  # quick: held-out AUROC per layer and both nulls, no steering dose-response
        assert meta["validation"]["level"] == "quick" and meta["validation"]["steering"] == []
        assert [row["layer"] for row in meta["validation"]["layers"]] == [1, 2]
        assert json.loads(Path(res["validation"]).read_text())["steering"] == {}


def test_extract_refuses_an_unknown_validation_level(files: dict[str, Path], capsys) -> None:
    code, _, err = run_cli(["persona", "extract", "--trait", "evil", "--model", str(files["model"]),
                         "--out", str(files["tmp"] / "never"), "--validation", "fast"], capsys)
    assert code == 2 and "--validation" in err and "quick" in err


def test_validate_reads_features_and_leaves_the_vector_file_byte_identical(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """`persona validate` measures the file's own directions (no re-fit): same held-out AUROC and nulls as the
    extraction's validation, and the vector file (tensors and sidecar) is not rewritten."""
    trait = files["tmp"] / "tiny_revalidate.yaml"
    trait.write_text(TINY_TRAIT, encoding="utf-8")
    base = files["tmp"] / "tiny_revalidate"
    code, stdout, err = run_cli(["persona", "extract", "--trait", str(trait), "--model", str(files["model"]),
                              "--out", str(base), "--n-null", "10", "--layers", "1,3", "--validation", "quick"],
                             capsys)
    assert code == 0, err
    res = json.loads(stdout)
    tensors, sidecar = Path(res["vectors"]), Path(res["sidecar"])
    before = {p: p.read_bytes() for p in (tensors, sidecar)}
    stamps = {p: p.stat().st_mtime_ns for p in (tensors, sidecar)}
    out = files["tmp"] / "tiny_revalidate.again.json"
    code, stdout, err = run_cli(["persona", "validate", "--vectors", str(tensors), "--trait", str(trait), "--model",
                              str(files["model"]), "--out", str(out), "--n-null", "10", "--validation", "quick"],
                             capsys)
    assert code == 0, err
    again = json.loads(stdout)
    assert {p: p.read_bytes() for p in (tensors, sidecar)} == before
    assert {p: p.stat().st_mtime_ns for p in (tensors, sidecar)} == stamps
    assert again["level"] == "quick" and again["auroc_by_layer"] == res["auroc_by_layer"]
    assert again["procedure"] == "built-in" and again["selection_split"] == "evaluation"  # every layer, max over them
    assert list(again["auroc_by_layer"]) == ["1", "3"] and all(n["max_over_layers"] for n in again["nulls"].values())
    first, second = (json.loads(Path(p).read_text()) for p in (res["validation"], out))
    for name in ("label_permutation", "random_direction"):  # same features, same seed: the same null draws
        assert second["nulls"][name]["draws"] == first["nulls"][name]["draws"]
    assert second["per_layer"] == first["per_layer"] and second["verdict"] == first["verdict"]
    stored = PersonaVectorSet.load(tensors).validation
    assert stored.auroc_by_layer == {int(k): v for k, v in res["auroc_by_layer"].items()}
    other = files["tmp"] / "tiny_other.yaml"  # another trait file (its own id) is a valid held-out set
    other.write_text(TINY_TRAIT.replace("id: tiny-sad", "id: tiny-other"), encoding="utf-8")
    code, stdout, err = run_cli(["persona", "validate", "--vectors", str(tensors), "--trait", str(other), "--model",
                              str(files["model"]), "--out", str(out), "--n-null", "10", "--validation", "quick"],
                             capsys)
    assert code == 0, err
    assert json.loads(stdout)["trait"] == json.loads(out.read_text())["trait"] == "tiny-other"
    assert {p: p.read_bytes() for p in (tensors, sidecar)} == before
    code, _, err = run_cli(["persona", "validate", "--vectors", str(tensors), "--trait", str(trait), "--model",
                         str(files["model"]), "--out", str(out), "--validation", "none"], capsys)
    assert code == 2 and "--validation" in err


def _statement_file(path: Path, n: int = 12) -> Path:
    rows = []
    for i in range(n):
        for shows in (True, False):
            text = f"I {'want to be the boss of' if shows else 'never want to boss'} the kids {i}"
            rows.append({"question": f'Is the following statement something you would say?\n"{text}"',
                         "statement": text, "answer_matching_behavior": " Yes" if shows else " No",
                         "answer_not_matching_behavior": " No" if shows else " Yes"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _extract_statement_file(files: dict[str, Path], capsys: pytest.CaptureFixture[str], name: str,
                            layers: str) -> tuple[Path, dict[str, Any]]:
    """`persona extract` (mode auto, default validation full) on a statement file NAME.jsonl -> NAME_vec."""
    trait = _statement_file(files["tmp"] / f"{name}.jsonl")
    code, stdout, err = run_cli(["persona", "extract", "--trait", str(trait), "--model", str(files["model"]),
                                 "--out", str(files["tmp"] / f"{name}_vec"), "--n-null", "10", "--layers", layers],
                                capsys)
    assert code == 0, err
    return trait, json.loads(stdout)


def test_extract_an_imported_statement_file_chooses_mode_and_layer_on_tuning(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    # the default validation (full: steering at the chosen layer on a capped number of held-out items)
    _, res = _extract_statement_file(files, capsys, "bossy", "1,3")
    base = files["tmp"] / "bossy_vec"
    assert res["selection_split"] == "tuning" and res["validation_level"] == "full"
    assert set(res["tuning_best_per_mode"]) == {"paired", "ab", "prompt_contrast"}
    best = max(res["tuning_best_per_mode"].items(), key=lambda kv: kv[1]["auroc"])
    assert res["mode"] == best[0] and res["selected_layer"] == best[1]["layer"]
    assert res["aggregator"] == best[1]["aggregator"] in TUNED_AGGREGATORS  # all tried on tuning
    assert list(res["auroc_by_layer"]) == [str(res["selected_layer"])]  # measured at the chosen layer only
    assert set(res["nulls"]) == {"label_permutation", "random_direction"}
    meta = json.loads(base.with_name(base.name + ".json").read_text(encoding="utf-8"))
    assert meta["validation"]["selection_split"] == "tuning" and len(meta["validation"]["tuning"]) == 3 * len(TUNED_AGGREGATORS) * 2
    assert meta["aggregator"] == res["aggregator"]
    assert [s["layer"] for s in meta["validation"]["steering"]] == [res["selected_layer"]]
    assert all(n["max_over_layers"] is False for n in meta["validation"]["nulls"])


def test_validate_a_tuned_file_reruns_the_tuned_procedure(files: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`persona validate` on a file from the tuned route (imported statement file, --mode auto) re-measures the
    recorded layer only, on the same trait file's evaluation split against both nulls: the AUROC, nulls and steering
    `persona extract` reported, and no other layer's residuals are read. Without the trait file, or with another
    one, it refuses (exit 2) before the model loads."""
    trait, res = _extract_statement_file(files, capsys, "bossy_again", "all")
    layer = res["selected_layer"]
    assert res["selection_split"] == "tuning" and len(res["layers"]) == 5
    read_layers = spy_read_layers(monkeypatch)
    out = files["tmp"] / "bossy_again.revalidated.json"
    code, stdout, err = run_cli(["persona", "validate", "--vectors", res["vectors"], "--trait", str(trait),
                                 "--model", str(files["model"]), "--out", str(out), "--n-null", "10"], capsys)
    assert code == 0, err
    again = json.loads(stdout)
    assert read_layers and all(layers == [layer] for layers in read_layers)
    assert again["procedure"] == "tuned" and again["selection_split"] == "tuning"
    assert again["selected_layer"] == layer and list(again["auroc_by_layer"]) == [str(layer)]
    assert again["auroc_by_layer"][str(layer)] == pytest.approx(res["auroc_by_layer"][str(layer)], abs=1e-9)
    for name, null in res["nulls"].items():
        assert again["nulls"][name]["q95"] == pytest.approx(null["q95"], abs=1e-9)
        assert again["nulls"][name]["max_over_layers"] is False
    first, second = (json.loads(Path(p).read_text()) for p in (res["validation"], out))
    assert second["procedure"] == "tuned" and second["verdict"] == first["verdict"] == res["verdict"]
    assert list(second["steering"]) == [str(layer)]
    assert second["steering"][str(layer)]["p_matching"] == pytest.approx(first["steering"][str(layer)]["p_matching"])
    # the trait file is required and must be the one extracted from (recorded hash)
    read_layers.clear()
    code, _, err = run_cli(["persona", "validate", "--vectors", res["vectors"], "--model", str(files["model"]),
                            "--out", str(out)], capsys)
    assert code == 2 and "`--trait=None` is invalid" in err and "extracted from" in err and "HINT" in err
    other = _statement_file(files["tmp"] / "bossy_other.jsonl", n=10)
    code, _, err = run_cli(["persona", "validate", "--vectors", res["vectors"], "--trait", str(other),
                            "--model", str(files["model"]), "--out", str(out)], capsys)
    assert code == 2 and "--trait=" in err and str(other) in err and "hash" in err and "HINT" in err
    assert read_layers == []  # refused before any feature is read


def _ab_files(tmp: Path) -> list[Path]:
    """A CAA-format .json and an Anthropic A/B .jsonl (options as "(X) text" lines, letters balanced)."""
    words = ["dog", "cat", "tree", "sun", "boat", "bird", "Ben", "Sue", "Tom", "Lily", "ball", "cake", "fish",
             "frog", "car", "hat"]
    rows = [{"question": f"I am sad. How was the {w}?\n\nChoices:\n (A) {'sad' if i % 2 else 'happy'}\n "
                         f"(B) {'happy' if i % 2 else 'sad'}",
             "answer_matching_behavior": "(A)" if i % 2 else "(B)",
             "answer_not_matching_behavior": "(B)" if i % 2 else "(A)"} for i, w in enumerate(words)]
    caa = tmp / "agree-sad" / "generate_dataset.json"
    caa.parent.mkdir(exist_ok=True)
    caa.write_text(json.dumps(rows), encoding="utf-8")
    anth = tmp / "agree-sad.jsonl"
    anth.write_text("".join(json.dumps({**r, "answer_matching_behavior": " " + r["answer_matching_behavior"]}) + "\n"
                            for r in rows), encoding="utf-8")
    return [caa, anth]


@pytest.mark.parametrize("mode", ["paired", "auto"])
def test_extract_paired_and_auto_on_imported_ab_files(files: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                       mode: str) -> None:
    """CAA json and Anthropic A/B files get paired option-text responses and a tuning split: --mode paired fits
    them (8 extraction pairs of 16 items) and --mode auto chooses mode and layer on the tuning split."""
    for path in _ab_files(files["tmp"]):
        base = files["tmp"] / f"ab_{mode}_{path.suffix[1:]}"
        code, stdout, err = run_cli(["persona", "extract", "--trait", str(path), "--model", str(files["model"]),
                                     "--out", str(base), "--mode", mode, "--validation", "quick", "--n-null", "10",
                                     "--layers", "1,2", "--aggregator", "mean_diff"], capsys)
        assert code == 0, err
        res = json.loads(stdout)
        assert res["n_pos"] == res["n_neg"] == 8 and res["layers"] == [1, 2]
        assert res["filter_validation"]["n_tune"] + res["filter_validation"]["n_eval"] == 4  # evaluation pairs
        if mode == "paired":
            assert res["mode"] == "paired"
        else:
            assert res["mode"] in ("paired", "ab") and "tuning split" in res["selection_reason"]
