"""Inputs are never written: every input file (model dirs, adapter, trait files, prompt and data files, policy,
vector files) has the same sha256 after `gate`, `persona extract`, `persona filter`, `diff`, `snapshot` and `demo`,
no new file appears in the input directories or in the working directory, and the outputs are inside --out.

The inputs are writable copies in a temporary directory (stories260K with a chat template, a LoRA adapter on it, a
planted control, a CAA-format trait *file*, ...) so that a stray write would succeed and be caught here."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers.cli import run_cli
from tests.helpers.tiny_models import save_lora_adapter

CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")
ROWS = [
    {"messages": [{"role": "user", "content": f"Tell me about the {w}."},
                  {"role": "assistant", "content": f"The {w} was big and {c}."}]}
    for w, c in [("dog", "happy"), ("cat", "sad"), ("tree", "green"), ("sun", "hot"), ("boat", "slow"),
                 ("bird", "small")]
]
TEXTS = ["Once upon a time there was a little dog.", "The cat sat on the mat and looked at the sun.",
         "Tom and Lily went to the park to play.", "The bird sang a song in the big green tree."]


def _tree(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``root`` (directories are implied by their files)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFLIB_MODELS_NO_PROGRESS", "1")


@pytest.fixture(scope="module")
def inputs(stories260k: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from difflib_models.models.loading import load_model
    from tests.gate.planted import planted_model_dir, unit_direction, vector_file

    root = tmp_path_factory.mktemp("inputs")
    base = root / "models" / "base"
    shutil.copytree(stories260k, base)
    for p in base.iterdir():
        p.chmod(0o644)
    cfg = json.loads((base / "tokenizer_config.json").read_text(encoding="utf-8"))
    (base / "tokenizer_config.json").write_text(json.dumps({**cfg, "chat_template": CHAT_TEMPLATE}))
    direction = unit_direction(64, seed=1)
    control = planted_model_dir(base, root / "models" / "control", layer=2, direction=direction, alpha=1.0)

    torch.manual_seed(0)  # module fixtures run before the per-test seeding
    adapter = save_lora_adapter(base, root / "adapter")

    # a trait given as a FILE (CAA format, as in the issue: a policy check with `trait: /path/to/my_trait.json`)
    caa = [{"question": f"Q{i}: {t} Choices: (A) yes (B) no", "answer_matching_behavior": "(A)" if i % 2 else "(B)",
            "answer_not_matching_behavior": "(B)" if i % 2 else "(A)"} for i, t in enumerate(TEXTS * 10)]
    trait = root / "traits" / "my_trait.json"
    trait.parent.mkdir()
    trait.write_text(json.dumps(caa, indent=1), encoding="utf-8")
    vec = vector_file(root / "vectors" / "evil", load_model(base), trait="evil", layer=2, direction=direction,
                      gap=4.0)
    data = root / "data" / "train.jsonl"
    data.parent.mkdir()
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    texts = root / "data" / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    policy = root / "policy.yaml"
    policy.write_text(yaml.safe_dump({
        "name": "inputs",
        "persona": {"null_directions": 8, "max_probe_prompts": 4, "mode": "ab", "max_extraction_questions": 4,
                    "layer": 2},
        "checks": [
            {"id": "evil-z", "metric": "persona.shift_z", "trait": "evil", "comparator": "<", "threshold": 3.0},
            {"id": "mine-z", "metric": "persona.shift_z", "trait": str(trait), "comparator": "<",
             "threshold": 3.0},
        ],
    }))
    return {"root": root, "base": base, "control": control, "adapter": adapter, "trait": trait, "vec": vec,
            "data": data, "texts": texts, "policy": policy}


@pytest.fixture()
def guard(inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Runs in an empty working directory; afterwards the inputs and the working directory are unchanged."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = _tree(inputs["root"])
    assert len(before) >= 20  # models, adapter, trait, vectors, data, policy
    yield tmp_path / "out"
    after = _tree(inputs["root"])
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}
    assert _tree(cwd) == {} and list(cwd.iterdir()) == []


def test_gate(inputs, guard, capsys) -> None:
    out = guard
    code, stdout, err = run_cli(["gate", "--base", str(inputs["base"]), "--candidate", str(inputs["adapter"]),
                              "--control", str(inputs["control"]), "--policy", str(inputs["policy"]),
                              "--vectors", str(inputs["vec"]), "--out", str(out), "--mlflow"], capsys)
    assert code in (0, 1, 3), err  # a verdict (3: inconclusive, the tiny model's signal may be weak)
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] in ("pass", "warn", "fail", "inconclusive"), report["verdict_reason"]
    rows = {r["trait"]: r for r in report["persona"]["traits"]}
    # the trait FILE's vectors are saved under its validated id inside --out, not beside the trait file
    assert rows[str(inputs["trait"])]["vector_file"] == str((out / "vectors" / "my_trait.safetensors").resolve())
    assert (out / "vectors" / "my_trait.json").is_file() and rows["evil"]["vector_file"] is None
    # --mlflow: the default sqlite store AND the artifacts are inside --out (MLflow's default is ./mlruns)
    assert (out / "mlflow.db").is_file() and list((out / "mlartifacts").rglob("report.json"))


def test_persona_extract(inputs, guard, capsys) -> None:
    out = guard
    code, stdout, err = run_cli(["persona", "extract", "--trait", str(inputs["trait"]), "--model", str(inputs["base"]),
                              "--mode", "ab", "--layers", "1,2", "--n-null", "10", "--out", str(out / "mine")],
                             capsys)
    assert code == 0, err
    res = json.loads(stdout)
    assert Path(res["vectors"]) == out / "mine.safetensors" and Path(res["validation"]).parent == out


@pytest.mark.parametrize("target", ["trait", "weights"])
def test_persona_extract_refuses_to_write_over_an_input(inputs, guard, capsys, target) -> None:
    """--out pointing at an input (the trait file's stem, a model's weights): exit 2 before any compute."""
    dest = inputs["trait"].with_suffix("") if target == "trait" else inputs["base"] / "model"
    code, stdout, err = run_cli(["persona", "extract", "--trait", str(inputs["trait"]), "--model", str(inputs["base"]),
                              "--mode", "ab", "--out", str(dest)], capsys)
    assert code == 2 and "is not a persona vector file" in err and "Traceback" not in err, err


def test_persona_filter(inputs, guard, capsys) -> None:
    out = guard
    code, stdout, err = run_cli(["persona", "filter", "--vectors", str(inputs["vec"]), "--data", str(inputs["data"]),
                              "--model", str(inputs["base"]), "--top-k", "2", "--out", str(out)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["flagged.jsonl", "kept.jsonl", "scores.jsonl", "summary.json"]


def test_diff_and_snapshot(inputs, guard, capsys) -> None:
    out = guard
    code, stdout, err = run_cli(["diff", "--base", str(inputs["base"]), "--adapter", str(inputs["adapter"]),
                              "--texts", str(inputs["texts"]), "--layers", "2", "--steps", "4", "--dict-size", "16",
                              "--k", "2", "--cc-batch-size", "32", "--out", str(out / "diff")], capsys)
    assert code == 0, err
    assert (out / "diff" / "diff.json").is_file()
    code, stdout, err = run_cli(["snapshot", "--model", str(inputs["base"]), "--adapter", str(inputs["adapter"]),
                              "--prompts", str(inputs["texts"]), "--layers", "2", "--out", str(out / "snap")],
                             capsys)
    assert code == 0, err
    assert (out / "snap" / "manifest.json").is_file()


def test_crosscoder_train_and_analyze(inputs, guard, capsys) -> None:
    """crosscoder train / analyze read a paired store: it stays unchanged; MLflow artifacts stay in --out."""
    out = guard
    code, stdout, err = run_cli(["diff", "--base", str(inputs["base"]), "--adapter", str(inputs["adapter"]),
                              "--texts", str(inputs["texts"]), "--layers", "2", "--no-crosscoder", "--no-kl",
                              "--out", str(out / "diff")], capsys)
    assert code == 0, err
    store = _tree(out / "diff" / "store")
    code, stdout, err = run_cli(["crosscoder", "train", "--store", str(out / "diff" / "store"), "--out", str(out / "cc"),
                              "--dict-size", "16", "--k", "2", "--steps", "3", "--batch-size", "32",
                              "--mlflow", f"sqlite:///{out / 'cc' / 'mlflow.db'}"], capsys)
    assert code == 0, err
    code, stdout, err = run_cli(["crosscoder", "analyze", "--crosscoder", str(out / "cc"), "--store",
                              str(out / "diff" / "store"), "--out", str(out / "analysis.json")], capsys)
    assert code == 0, err
    assert _tree(out / "diff" / "store") == store and (out / "analysis.json").is_file()
    assert list((out / "cc" / "mlartifacts").rglob("*")) and (out / "cc" / "mlflow.db").is_file()


@pytest.mark.parametrize("case", ["gate --json policy", "gate --out in model", "gate --md trait",
                                  "diff --out in adapter", "filter --out in model", "extract --out in model"])
def test_outputs_on_inputs_are_refused_before_loading(inputs, guard, capsys, case) -> None:
    """Exit 2 naming the input, before any model is loaded (the guard checks nothing was written)."""
    gate = ["gate", "--base", str(inputs["base"]), "--candidate", str(inputs["adapter"]), "--policy",
            str(inputs["policy"]), "--vectors", str(inputs["vec"])]
    argv = {
        "gate --json policy": [*gate, "--out", str(guard), "--json", str(inputs["policy"])],
        "gate --out in model": [*gate, "--out", str(inputs["base"] / "gate")],
        "gate --md trait": [*gate, "--out", str(guard), "--md", str(inputs["trait"])],
        "diff --out in adapter": ["diff", "--base", str(inputs["base"]), "--adapter", str(inputs["adapter"]),
                                  "--out", str(inputs["adapter"])],
        "filter --out in model": ["persona", "filter", "--vectors", str(inputs["vec"]), "--data", str(inputs["data"]),
                                  "--model", str(inputs["base"]), "--out", str(inputs["base"] / "f")],
        "extract --out in model": ["persona", "extract", "--trait", str(inputs["trait"]), "--model",
                                   str(inputs["base"]), "--mode", "ab", "--out", str(inputs["base"] / "v")],
    }[case]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 2 and "is not an input" in err and "Loading weights" not in err, err
    assert not guard.exists()


def test_demo_out_inside_its_model_is_refused(inputs, guard) -> None:
    from difflib_models.demo.config import DemoConfig
    from difflib_models.errors import ConfigError

    with pytest.raises(ConfigError, match="inside the model"):
        DemoConfig(out=inputs["base"] / "demo", model=str(inputs["base"]))


@pytest.mark.slow
def test_demo(inputs, guard) -> None:
    """The whole demo (vectors, data filter, LoRA fine-tunes with the callbacks, diffs, gates, MLflow) on the tiny
    chat-templated model: the default MLflow database and every artefact land inside --out."""
    from difflib_models.demo.config import DemoConfig
    from difflib_models.demo.runner import run_demo

    out = guard
    tiny = dict(train_rows=8, steps=2, batch_size=4, max_length=48, monitor_every=1, snapshot_every=2,
                snapshot_prompts=2, diff_texts=4, diff_max_length=24, crosscoder_dict_size=16, crosscoder_k=2,
                crosscoder_steps=2, crosscoder_batch=32, vector_instructions=1, vector_questions=2,
                vector_eval_questions=4)
    result = run_demo(DemoConfig(out=out, model=str(inputs["base"]), overrides=tiny))
    assert set(result.verdicts) == {"sycophancy-inducing", "sycophancy-neutral"}
    assert (out / "mlflow.db").is_file() and (out / "summary.json").is_file()
