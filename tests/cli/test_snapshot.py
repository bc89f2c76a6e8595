"""`difflib-models snapshot` / `inspect` on TinyStories-656K, bad input exit codes, and the crash test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from difflib_models.store import ActivationStore
from tests.helpers.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
N_PROMPTS = 160


@pytest.fixture(scope="module")
def stories(tinystories_text: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = [ln.strip() for ln in tinystories_text.read_text(encoding="utf-8").splitlines() if ln.strip()]
    path = tmp_path_factory.mktemp("prompts") / "stories.txt"
    path.write_text("\n".join(lines[:N_PROMPTS]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _no_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFLIB_MODELS_NO_PROGRESS", "1")


def _snapshot_args(model: Path, prompts: Path, out: Path, *extra: str) -> list[str]:
    return [
        "snapshot",
        "--model",
        str(model),
        "--layers",
        "0,1",
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        *extra,
    ]


def test_snapshot_then_inspect(tinystories_656k: Path, stories: Path, tmp_path: Path, capsys) -> None:
    few = tmp_path / "few.txt"
    few.write_text("\n".join(stories.read_text().splitlines()[:10]) + "\n")
    out = tmp_path / "store"
    code, stdout, _ = run_cli(
        _snapshot_args(tinystories_656k, few, out, "--max-length", "32", "--batch-size", "3"), capsys
    )
    assert code == 0, stdout
    store = ActivationStore.open(out)
    assert store.complete and store.layers == [0, 1] and store.prompt_ids() == list(range(10))
    assert store.n_tokens <= 10 * 31 and store.n_tokens > 10 * 20
    assert f"{out}: {store.n_tokens} tokens from 10 prompts" in stdout and "resumed" not in stdout
    code, stdout, _ = run_cli(["inspect", str(out), "--json"], capsys)
    assert code == 0
    summary = json.loads(stdout)
    assert summary["n_tokens"] == store.n_tokens and summary["complete"] is True
    assert summary["verified"] is False and summary["checksums"] == "not verified (use --verify)"
    code, stdout, _ = run_cli(["inspect", str(out)], capsys)
    assert code == 0 and "not verified (use --verify)" in stdout
    assert summary["layers"] == [0, 1] and summary["d_model"] == 128
    assert summary["norm_scale"]["model"]["1"] == pytest.approx(store.norm_scale("model", 1))
    code, stdout, _ = run_cli(["inspect", str(out), "--verify"], capsys)
    assert code == 0
    assert "blocks.0, blocks.1" in stdout and f"{store.n_tokens} / 10" in stdout
    assert f"verified ({store.n_shards} shards)" in stdout and "not verified" not in stdout
    code, stdout, _ = run_cli(["inspect", str(out), "--json", "--verify"], capsys)
    assert code == 0 and json.loads(stdout)["checksums"] == f"verified ({store.n_shards} shards)"
    # a flipped byte is found by --verify and named; exit 3 (runtime error)
    shard = out / store.manifest.shards[0].file
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    code, _, stderr = run_cli(["inspect", str(out), "--verify"], capsys)
    assert code == 3 and "shard-00000.safetensors is corrupt" in stderr


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("layer", "`layers=7` is invalid. Allowed: integers in [0, 1]"),
        ("model", "this path does not exist"),
        ("prompts", "empty"),
        ("positions", "positions"),
    ],
)
def test_bad_input_exits_2(
    tinystories_656k: Path,
    stories: Path,
    tmp_path: Path,
    capsys,
    case: str,
    needle: str,
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    model, prompts, extra = tinystories_656k, stories, []
    args = {"layer": ["--layers", "0,7"], "positions": ["--positions", "every_other"]}.get(case, [])
    if case == "model":
        model = tmp_path / "no" / "such-model"
    if case == "prompts":
        prompts = empty
    argv = _snapshot_args(model, prompts, tmp_path / "out", *extra)
    argv += args
    code, _, stderr = run_cli(argv, capsys)
    assert code == 2
    assert needle in stderr.lower() if case == "prompts" else needle in stderr
    assert not (tmp_path / "out").exists()


def test_inspect_missing_store(tmp_path: Path, capsys) -> None:
    code, _, stderr = run_cli(["inspect", str(tmp_path)], capsys)
    assert code == 3 and "manifest.json not found" in stderr
    code, _, stderr = run_cli(["inspect", str(tmp_path / "nope")], capsys)
    assert code == 2


@pytest.mark.slow
def test_crash_mid_snapshot_then_resume(
    tinystories_656k: Path, stories: Path, tmp_path: Path, capsys
) -> None:
    """SIGKILL a snapshot process once a shard exists; the store opens; rerunning completes it exactly."""
    out = tmp_path / "store"
    args = _snapshot_args(
        tinystories_656k, stories, out, "--max-length", "48", "--batch-size", "2", "--shard-tokens", "100"
    )
    env = {**os.environ, "DIFFLIB_MODELS_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "difflib_models", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            mpath = out / "manifest.json"
            if mpath.is_file() and json.loads(mpath.read_text())["shards"]:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode() if proc.stderr else ""
    partial = ActivationStore.open(out)
    assert not partial.complete and 1 <= partial.n_shards
    done = partial.prompt_ids()
    assert (
        done == list(range(len(done))) and len(done) < N_PROMPTS
    )  # a prefix of whole batches, not everything
    assert len(done) % 2 == 0
    code, stdout, _ = run_cli(["inspect", str(out), "--json"], capsys)
    assert code == 0 and json.loads(stdout)["n_shards"] == partial.n_shards
    # rerun the same command: resumes and completes
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0, stdout
    assert f"(resumed: {len(done)} prompts were already stored)" in stdout
    final = ActivationStore.open(out)
    assert final.complete and final.prompt_ids() == list(range(N_PROMPTS))
    # against an uninterrupted run of the same snapshot
    from difflib_models.capture.pipeline import snapshot
    from difflib_models.capture.prompts import load_prompts
    from difflib_models.models.loading import load_model

    ref = snapshot(
        load_model(tinystories_656k),
        load_prompts(str(stories)),
        [0, 1],
        tmp_path / "ref",
        batch_size=2,
        max_length=48,
        shard_tokens=100,
    )
    a, b = final.token_table(), ref.token_table()
    assert final.n_tokens == ref.n_tokens
    for key in ("token_ids", "prompt_id", "pos_index", "seq_index"):
        assert torch.equal(a[key], b[key]), key
    got = torch.cat([x["acts"] for x in final.iter_batches(8192)])
    want = torch.cat([x["acts"] for x in ref.iter_batches(8192)])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    pairs = list(zip(a["prompt_id"].tolist(), a["pos_index"].tolist(), strict=True))
    assert len(pairs) == len(set(pairs))


def test_snapshot_into_a_locked_store_exits_2_naming_the_holder(
    tinystories_656k: Path, stories: Path, tmp_path: Path, capsys
) -> None:
    """A second writer of one store (here: this process holds the lock, the CLI is the second) is refused."""
    from difflib_models.store.lock import StoreLock

    out = tmp_path / "store"
    with StoreLock(out):
        code, _, stderr = run_cli(_snapshot_args(tinystories_656k, stories, out, "--max-length", "16"), capsys)
    assert code == 2
    assert f"is locked by the writer with pid {os.getpid()}" in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written
    code, _, _ = run_cli(_snapshot_args(tinystories_656k, stories, out, "--max-length", "16"), capsys)
    assert code == 0 and ActivationStore.open(out).complete  # released: the same command now succeeds
