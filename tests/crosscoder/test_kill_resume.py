"""`difflib-models crosscoder train` SIGKILLed at 10 seeded atomic writes (checkpoints, weights, summary): every
file left is complete (``last.ckpt`` loads, the saved crosscoder loads, the summary parses), and rerunning the same
command resumes from ``last.ckpt`` to the uninterrupted run's weights and metrics, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from difflib_models.cli.app import main
from difflib_models.crosscoder.model import Crosscoder
from tests.helpers.killpoints import WriteCounter, draw_points, leftover_temp_files, run_many

pytestmark = pytest.mark.slow

SEED = 14
STEPS = 40  # checkpoints every STEPS // 4 = 10 steps


def _args(acts: Path, out: Path) -> list[str]:
    return ["crosscoder", "train", "--acts", str(acts), "--out", str(out), "--dict-size", "64", "--k", "2",
            "--steps", str(STEPS), "--batch-size", "256", "--lr", "3e-3"]


def _run_in_process(args: list[str], root: Path) -> list[str]:
    with WriteCounter(root) as counter, pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code in (0, None), exc.value.code
    return counter.targets


def _check_complete_files(out: Path) -> None:
    """Whatever the kill left is a complete file: the checkpoint loads, weights + config load, JSON parses."""
    last = out / "checkpoints" / "last.ckpt"
    if last.is_file():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        assert ckpt["global_step"] in (10, 20, 30, 40) and "state_dict" in ckpt
    if (out / "crosscoder" / "crosscoder.json").is_file():
        json.loads((out / "crosscoder" / "crosscoder.json").read_text())
    if (out / "crosscoder" / "crosscoder.safetensors").is_file():
        from safetensors.torch import load_file

        assert load_file(out / "crosscoder" / "crosscoder.safetensors")
    if (out / "train_summary.json").is_file():
        json.loads((out / "train_summary.json").read_text())
    visible = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert all(p.suffix in (".ckpt", ".json", ".safetensors") for p in visible), visible


def test_crosscoder_training_resumes_after_sigkill_at_10_seeded_points(tmp_path: Path) -> None:
    from difflib_models.crosscoder.synthetic import make_synthetic_pairs

    acts = tmp_path / "acts.safetensors"
    save_file({"acts": make_synthetic_pairs(32, n_tokens=4000, seed=2).acts.contiguous()}, str(acts))
    ref = tmp_path / "ref"
    targets = _run_in_process(_args(acts, ref), ref)
    assert targets.count("checkpoints/last.ckpt") == 4
    assert targets[-1] == "train_summary.json"
    want = Crosscoder.load(ref / "crosscoder")
    want_metrics = json.loads((ref / "train_summary.json").read_text())["metrics"]
    points = draw_points(len(targets), 10, SEED)

    outs = [tmp_path / f"kill-{p.k}-{p.phase}" for p in points]
    killed = run_many([{"target": "difflib_models", "args": _args(acts, out), "root": out,
                        "log": tmp_path / f"{out.name}.log", "kill_at": p} for p, out in zip(points, outs, strict=True)])
    for point, out, result in zip(points, outs, killed, strict=True):
        assert result.killed, f"{point}: rc {result.returncode}\n{result.stderr[-2000:]}"
        assert result.targets == targets[: point.k]  # the same writes in the same order, cut at the kill point
        _check_complete_files(out)

    for point, out in zip(points, outs, strict=True):
        last = out / "checkpoints" / "last.ckpt"
        start = torch.load(last, map_location="cpu", weights_only=True)["global_step"] if last.is_file() else 0
        rewrites = _run_in_process(_args(acts, out), out)  # the same command again: resumes from last.ckpt
        assert rewrites.count("checkpoints/last.ckpt") == (STEPS - start) // 10, point
        assert leftover_temp_files(out) == [], point
        # the resumed run replays the same batches from the same state (seeded data order, checkpointed
        # optimizer, counters and threshold), so on one machine its weights equal the uninterrupted run's bit
        # for bit and so do the evaluation metrics
        got = Crosscoder.load(out / "crosscoder")
        for name, value in want.state_dict().items():
            assert torch.equal(got.state_dict()[name], value), (point, name)
        assert json.loads((out / "train_summary.json").read_text())["metrics"] == want_metrics, point
