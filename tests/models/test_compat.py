"""Comparable models up front: tokenizer vocabulary, hidden size and depth of base / candidate / control are checked
before any compute (exit 2 naming the models), and a model that computes NaN is named (exit 3)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from difflib_models.cli.app import main
from difflib_models.errors import ConfigError, NonFiniteActivationError
from difflib_models.models.compat import check_compatible

POLICY = {
    "name": "compat",
    "persona": {"null_directions": 8, "max_probe_prompts": 4, "max_extraction_questions": 4,
                "max_instructions": 1},
    "checks": [{"id": "evil-z", "metric": "persona.shift_z", "trait": "evil", "comparator": "<", "threshold": 3.0}],
}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return int(exc.value.code or 0), capsys.readouterr().err


def _variant(src: Path, dst: Path, **config: object) -> Path:
    """A randomly initialised model with ``src``'s tokenizer and config except ``config`` (saved to ``dst``)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(src)
    for k, v in config.items():
        setattr(cfg, k, v)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def variants(stories260k: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("compat")
    nan_dir = root / "nan"
    model = AutoModelForCausalLM.from_pretrained(stories260k)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    model.save_pretrained(nan_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(stories260k / name, nan_dir / name)
    policy = root / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    return {
        "hidden32": _variant(stories260k, root / "hidden32", hidden_size=32, head_dim=4, intermediate_size=64),
        "layers3": _variant(stories260k, root / "layers3", num_hidden_layers=3),
        "nan": nan_dir,
        "policy": policy,
    }


def test_check_compatible_names_both_models_and_the_property(stories260k, tinystories_656k, variants) -> None:
    from difflib_models.models.loading import load_model

    base = load_model(stories260k)
    check_compatible([("base", base), ("candidate", load_model(stories260k))])  # same architecture: fine
    cases = [
        (tinystories_656k, "candidate.tokenizer", ["512 tokens", "2048 tokens"]),
        (variants["hidden32"], "candidate.hidden_size", ["=32`", "64 (the hidden size of base"]),
        (variants["layers3"], "candidate.n_layers", ["=3`", "5 (the number of decoder blocks of base"]),
    ]
    for path, argument, numbers in cases:
        with pytest.raises(ConfigError) as exc:
            check_compatible([("base", base), ("candidate", load_model(path))])
        msg = str(exc.value)
        assert argument in msg and f"base {str(stories260k)!r}" in msg and f"candidate {str(path)!r}" in msg, msg
        assert all(n in msg for n in numbers), msg


def test_gate_refuses_mismatched_pairs_before_any_compute(stories260k, tinystories_656k, variants, tmp_path,
                                                           capsys, monkeypatch) -> None:
    import difflib_models.gate.runner as runner

    def no_compute(*args: object, **kwargs: object) -> None:
        raise AssertionError("computed before the compatibility check")

    monkeypatch.setattr(runner, "_check_finite", no_compute)
    monkeypatch.setattr(runner, "_extract", no_compute)
    gate = ["gate", "--policy", str(variants["policy"]), "--out", str(tmp_path / "o")]
    # the case: stories260K (hidden 64, 5 blocks) vs TinyStories-656K (hidden 128, 2 blocks, other vocab)
    code, err = _run([*gate, "--base", str(tinystories_656k), "--candidate", str(stories260k)], capsys)
    assert code == 2 and "candidate.tokenizer" in err and str(stories260k) in err and str(tinystories_656k) in err
    code, err = _run([*gate, "--base", str(stories260k), "--candidate", str(variants["hidden32"])], capsys)
    assert code == 2 and "candidate.hidden_size=32" in err and "64 (the hidden size of base" in err
    code, err = _run([*gate, "--base", str(stories260k), "--candidate", str(stories260k),
                      "--control", str(variants["layers3"])], capsys)
    assert code == 2 and "control.n_layers=3" in err and f"control {str(variants['layers3'])!r}" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def test_diff_refuses_mismatched_pair(stories260k, variants, tmp_path, capsys) -> None:
    code, err = _run(["diff", "--base", str(stories260k), "--finetuned", str(variants["hidden32"]),
                      "--out", str(tmp_path / "d"), "--no-crosscoder", "--max-texts", "2"], capsys)
    assert code == 2 and "finetuned.hidden_size=32" in err and f"base {str(stories260k)!r}" in err
    assert not (tmp_path / "d" / "diff.json").exists()


def test_gate_names_the_model_that_computes_nan(stories260k, variants, tmp_path, capsys) -> None:
    gate = ["gate", "--policy", str(variants["policy"]), "--base", str(stories260k)]
    code, err = _run([*gate, "--candidate", str(variants["nan"]), "--out", str(tmp_path / "a")], capsys)
    assert code == 3 and f"candidate {str(variants['nan'])!r}" in err and "NaN" in err, err
    code, err = _run([*gate, "--candidate", str(stories260k), "--control", str(variants["nan"]),
                      "--out", str(tmp_path / "b")], capsys)
    assert code == 3 and f"control {str(variants['nan'])!r}" in err, err
    assert "Traceback" not in err


def test_nan_inside_a_computation_is_prefixed_with_the_model(stories260k) -> None:
    from difflib_models.gate.runner import _naming
    from difflib_models.models.loading import load_model

    loaded = load_model(stories260k)
    with pytest.raises(NonFiniteActivationError, match=r"^base '.*stories260k': NaN at blocks.2$"), \
            _naming("base", loaded):
        raise NonFiniteActivationError("NaN at blocks.2")


def test_diff_names_the_model_that_computes_nan(stories260k, variants, tmp_path, capsys) -> None:
    code, err = _run(["diff", "--base", str(stories260k), "--finetuned", str(variants["nan"]),
                      "--out", str(tmp_path / "d"), "--no-crosscoder", "--no-kl", "--max-texts", "2"], capsys)
    assert code == 3 and f"finetuned {str(variants['nan'])!r}" in err and "blocks." in err, err
    assert not (tmp_path / "d" / "diff.json").exists()
