"""The ready-made LightningCLI configs in the top-level callbacks/ folder run as shipped (plus small overrides)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "callbacks"


def _cli(namespace: str, args: list[str]):
    import importlib

    cli_mod = importlib.import_module(f"{namespace}.cli")
    from tests.callbacks import lit_helpers

    model = lit_helpers.TinyLM if namespace == "lightning.pytorch" else lit_helpers.PLTinyLM
    return cli_mod.LightningCLI(model, args=args, save_config_callback=None)


def _trainer_args(tmp_path: Path) -> list[str]:
    return ["--trainer.accelerator=cpu", "--trainer.max_steps=4", f"--trainer.default_root_dir={tmp_path}",
            "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false"]


def test_every_config_is_valid_yaml_with_class_paths() -> None:
    files = sorted(CONFIGS.glob("*.yaml"))
    assert files
    for f in files:
        cbs = yaml.safe_load(f.read_text())["trainer"]["callbacks"]
        for cb in cbs:
            assert cb["class_path"].startswith("difflib_models.callbacks.")


def test_activation_snapshot_config_runs(tmp_path: Path, tinystories_656k: Path) -> None:
    args = ["fit", "--config", str(CONFIGS / "activation_snapshot.yaml"), *_trainer_args(tmp_path),
            f"--model.tokenizer_dir={tinystories_656k}", "--model.n_samples=8"]
    # a shorter schedule than the shipped default, set the LightningCLI way
    cfg = yaml.safe_load((CONFIGS / "activation_snapshot.yaml").read_text())
    cfg["trainer"]["callbacks"][0]["init_args"].update(every_n_steps=2, layers="0,2", prompts=["A cat sat."])
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    args[2] = str(tmp_path / "cfg.yaml")
    cli = _cli("lightning.pytorch", args)
    cb = next(c for c in cli.trainer.callbacks if type(c).__name__ == "ActivationSnapshot")
    assert cb.layers == [0, 2] and cb.done_steps == [0, 2, 4]
    index = json.loads((tmp_path / "difflib_models" / "snapshots" / "index.json").read_text())
    assert [e["step"] for e in index["snapshots"]] == [0, 2, 4]


def test_pytorch_lightning_namespace(tmp_path: Path, tinystories_656k: Path) -> None:
    import pytorch_lightning as pl

    cfg = yaml.safe_load((CONFIGS / "activation_snapshot.yaml").read_text())
    cb_cfg = cfg["trainer"]["callbacks"][0]
    cb_cfg["class_path"] = "difflib_models.callbacks.pl.ActivationSnapshot"
    cb_cfg["init_args"].update(every_n_steps=3, layers=[1], prompts=["A cat sat."], at_start=False)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    cli = _cli("pytorch_lightning", ["fit", "--config", str(tmp_path / "cfg.yaml"), *_trainer_args(tmp_path),
                                     f"--model.tokenizer_dir={tinystories_656k}", "--model.n_samples=8"])
    cb = next(c for c in cli.trainer.callbacks if type(c).__name__ == "ActivationSnapshot")
    assert isinstance(cb, pl.Callback) and cb.done_steps == [3, 4]


def _override(tmp_path: Path, name: str, **init_args) -> Path:
    cfg = yaml.safe_load((CONFIGS / name).read_text())
    cfg["trainer"]["callbacks"][0]["init_args"].update(init_args)
    out = tmp_path / name
    out.write_text(yaml.safe_dump(cfg))
    return out


def test_persona_monitor_config_runs(tmp_path: Path, tinystories_656k: Path) -> None:
    import torch

    from tests.callbacks.lit_helpers import TinyLM
    from tests.callbacks.test_persona_monitor import _vector_file

    vf = _vector_file(tmp_path / "syc", TinyLM(tokenizer_dir=str(tinystories_656k)), torch.randn(32))
    cfg = _override(tmp_path, "persona_monitor.yaml", vectors=[vf], every_n_steps=2)
    cli = _cli("lightning.pytorch", ["fit", "--config", str(cfg), *_trainer_args(tmp_path),
                                     f"--model.tokenizer_dir={tinystories_656k}", "--model.n_samples=8"])
    mon = next(c for c in cli.trainer.callbacks if type(c).__name__ == "PersonaMonitor")
    assert [r["step"] for r in mon.series] == [2, 4] and mon.thresholds["fail_z"] == 3.0
    assert "persona/sycophancy/shift_z" in cli.trainer.callback_metrics
    data = json.loads((tmp_path / "difflib_models" / "persona_monitor" / "persona_monitor.json").read_text())
    assert data["thresholds"]["calibrated"] is False


def test_data_filter_config_runs(tmp_path: Path, tinystories_656k: Path) -> None:
    import importlib

    import torch

    from tests.callbacks.lit_helpers import ChatLM
    from tests.callbacks.test_persona_monitor import _vector_file

    vf = _vector_file(tmp_path / "syc", ChatLM(tokenizer_dir=str(tinystories_656k)), torch.randn(32))
    cfg = _override(tmp_path, "data_filter.yaml", vectors=vf, mode="top_k", top_k=4)
    cli_mod = importlib.import_module("lightning.pytorch.cli")
    cli = cli_mod.LightningCLI(ChatLM, save_config_callback=None, args=[
        "fit", "--config", str(cfg), *_trainer_args(tmp_path), f"--model.tokenizer_dir={tinystories_656k}",
        "--model.n_rows=12", "--trainer.max_steps=-1", "--trainer.max_epochs=1"])
    assert len(cli.model.train_dataset) == 8 and cli.model.batches_per_epoch == {0: 2}
    scores = (tmp_path / "difflib_models" / "data_filter" / "round-0-epoch-0" / "scores.jsonl").read_text()
    assert len(scores.splitlines()) == 12
