"""`--json` on every command: stdout holds exactly one JSON document (json.loads succeeds, with the expected keys),
even with progress bars forced on (DIFFLIB_MODELS_PROGRESS=1): tqdm and Lightning's bar go to stderr."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from difflib_models.cli.app import main
from tests.cli.test_persona_cli import ROWS, TINY_TRAIT
from tests.gate.conftest import PERSONA_POLICY

TEXTS = [f"Tom saw a big dog number {i}. They played in the park." for i in range(10)]


def _json(argv: list[str], capsys: pytest.CaptureFixture[str], codes: tuple[int, ...] = (0,),
          err_has: tuple[str, ...] = ()) -> dict[str, Any]:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert int(exc.value.code or 0) in codes, err
    assert all(text in err for text in err_has), err  # the bars were drawn, on stderr
    doc = json.loads(out)  # the whole of stdout is one document
    assert isinstance(doc, dict) and out.strip().startswith("{") and out.strip().endswith("}")
    return doc


@pytest.fixture(autouse=True)
def _bars_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFLIB_MODELS_PROGRESS", "1")  # bars on although stderr is not a terminal here
    monkeypatch.delenv("DIFFLIB_MODELS_NO_PROGRESS", raising=False)


@pytest.fixture(scope="module")
def work(stories260k: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from difflib_models.models.loading import load_model
    from tests.gate.planted import planted_model_dir, unit_direction, vector_file

    root = tmp_path_factory.mktemp("json_cli")
    base = load_model(stories260k)
    v = unit_direction(base.d_model, seed=1)
    cand = planted_model_dir(stories260k, root / "cand", layer=2, direction=v, alpha=4.0)
    vec = vector_file(root / "evil", base, trait="evil", layer=2, direction=v, gap=8.0)
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft = get_peft_model(load_model(stories260k).model, LoraConfig(r=4, target_modules=["down_proj"],
                                                                     lora_dropout=0.0))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft.save_pretrained(root / "adapter")
    (root / "texts.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    (root / "tiny.yaml").write_text(TINY_TRAIT, encoding="utf-8")
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    (root / "policy.yaml").write_text(yaml.safe_dump(PERSONA_POLICY), encoding="utf-8")
    return {"root": root, "model": stories260k, "cand": cand, "vec": vec, "adapter": root / "adapter"}


def test_snapshot_and_inspect(work: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = work["root"] / "store"
    doc = _json(["snapshot", "--model", str(work["model"]), "--prompts", str(work["root"] / "texts.txt"),
                 "--layers", "1-2", "--out", str(out)], capsys)
    assert doc["layers"] == [1, 2] and doc["n_texts"] == len(TEXTS) and doc["n_tokens"] > len(TEXTS)
    again = _json(["inspect", str(out)], capsys)
    assert again["n_tokens"] == doc["n_tokens"] and again["complete"] is True


def test_diff_then_crosscoder(work: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = work["root"] / "diff"
    doc = _json(["diff", "--base", str(work["model"]), "--adapter", str(work["adapter"]), "--out", str(out),
                 "--prompts", str(work["root"] / "texts.txt"), "--layers", "mid", "--dict-size", "32", "--k", "4",
                 "--steps", "5", "--cc-batch-size", "32", "--batch-size", "5"], capsys,
                err_has=("harvest", "Epoch 0"))
    assert doc["pair_mode"] == "adapter" and doc["layers"] == [2] and doc["crosscoder"]["status"] == "trained"
    assert doc == json.loads((out / "diff.json").read_text())
    store = out / "store"
    assert store.is_dir()
    cc = _json(["crosscoder", "train", "--store", str(store), "--out", str(work["root"] / "cc"), "--layers", "mid",
                "--dict-size", "32", "--k", "4", "--steps", "5", "--tokens-per-step", "32"], capsys)
    assert cc["out"] == str(work["root"] / "cc") and "fve" in cc
    an = _json(["crosscoder", "analyze", "--crosscoder", str(work["root"] / "cc"), "--store", str(store),
                "--layers", "mid", "--out", str(work["root"] / "analysis.json")], capsys)
    assert sum(an["class_counts"].values()) == 32


def test_persona_commands(work: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    model, root = str(work["model"]), work["root"]
    ex = _json(["persona", "extract", "--trait", str(root / "tiny.yaml"), "--model", model, "--out",
                str(root / "tiny_vec"), "--no-validate", "--layers", "1-3"], capsys)
    assert ex["mode"] == "prompt_contrast" and ex["layers"] == [1, 2, 3]
    va = _json(["persona", "validate", "--vectors", ex["vectors"], "--trait", str(root / "tiny.yaml"), "--model",
                model, "--n-null", "10"], capsys)
    assert set(va["auroc_by_layer"]) == {"1", "2", "3"}
    fi = _json(["persona", "filter", "--vectors", str(work["vec"]), "--data", str(root / "train.jsonl"), "--model",
                model, "--out", str(root / "filtered")], capsys)
    assert fi["n_kept"] == len(ROWS)  # report only: nothing dropped without a selection option
    st = _json(["persona", "steer", "--vectors", str(work["vec"]), "--prompt", "Hi", "--alpha", "0", "--alpha",
                "1", "--model", model, "--max-new-tokens", "4"], capsys)
    assert [g["alpha"] for g in st["generations"]] == [0.0, 1.0]


def test_gate_and_report(work: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = work["root"] / "gate"
    doc = _json(["gate", "--base", str(work["model"]), "--candidate", str(work["cand"]), "--out", str(out),
                 "--policy", str(work["root"] / "policy.yaml"), "--vectors", str(work["vec"])], capsys, codes=(1,))
    assert doc["verdict"] == "fail" and doc["exit_code"] == 1 and doc["paths"]["html"].endswith("report.html")
    rep = _json(["report", "--from", str(out), "--formats", "md"], capsys)
    assert rep["written"]["md"].endswith("report.md")


def test_demo_json_keeps_stdout_clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's work (SmolLM2 fine-tunes, minutes) is replaced by a stand-in that prints and logs the way the
    libraries it drives do; the command's plumbing must keep all of that off stdout."""
    import difflib_models.demo.runner as runner

    class Result:
        summary = {"verdicts": {"inducing": "fail", "control": "pass"}, "nan": float("nan")}
        as_expected = True

    def fake_run_demo(config: Any) -> Result:
        print("Epoch 0: 100%|██████████| 4/4")  # what Lightning's bar writes to sys.stdout
        sys.stdout.write("\rstep 3/4")
        logging.getLogger("lightning.pytorch").warning("a Lightning warning")
        return Result()

    monkeypatch.setattr(runner, "run_demo", fake_run_demo)
    doc = _json(["demo", "--out", str(tmp_path / "demo")], capsys)
    assert doc == {"verdicts": {"inducing": "fail", "control": "pass"}, "nan": None}
