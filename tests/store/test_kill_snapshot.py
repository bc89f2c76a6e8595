"""`difflib-models snapshot` SIGKILLed at 10 seeded atomic writes: the store on disk is always consistent (every
file present is a complete copy of the uninterrupted run's file, or a temp/orphan the resume removes), and
rerunning the same command gives byte-identical shards and manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from difflib_models.cli.app import main
from difflib_models.store import ActivationStore
from difflib_models.store.lock import LOCK_NAME
from tests.helpers.killpoints import WriteCounter, draw_points, leftover_temp_files, run_many

pytestmark = [pytest.mark.slow, pytest.mark.shared]

N_PROMPTS = 24
SEED = 14


def _args(model: Path, prompts: Path, out: Path) -> list[str]:
    return ["snapshot", "--model", str(model), "--layers", "0,1", "--prompts", str(prompts), "--out", str(out),
            "--max-length", "48", "--batch-size", "2", "--shard-tokens", "100"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _job(model: Path, prompts: Path, out: Path, log: Path, kill_at=None) -> dict:
    return {"target": "difflib_models", "args": _args(model, prompts, out), "root": out, "log": log,
            "kill_at": kill_at}


def _run_in_process(args: list[str], root: Path) -> int:
    """Run the CLI in this process (imports already paid), counting its atomic writes under ``root``."""
    with WriteCounter(root) as counter, pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code in (0, None), exc.value.code
    return counter.n_writes


def _check_consistent(out: Path, ref: Path) -> int:
    """The killed store: manifest parses, every listed shard verifies, every shard file present (listed or not)
    is byte-identical to the reference's shard of that name. Returns the number of prompts stored."""
    ref_sha = {s.file: s.sha256 for s in ActivationStore.open(ref).manifest.shards}
    for shard in sorted((out / "shards").glob("*.safetensors")) if (out / "shards").is_dir() else []:
        assert _sha(shard) == ref_sha[f"shards/{shard.name}"], f"{shard} is not a complete shard"
    if not (out / "manifest.json").is_file():
        return 0
    store = ActivationStore.open(out)  # manifest parses and is valid
    assert not store.complete or store.n_shards == len(ref_sha)
    for i in range(store.n_shards):
        store.load_shard(i)  # sha256 checked against the manifest, tensors checked against it
    assert {s.file: s.sha256 for s in store.manifest.shards}.items() <= ref_sha.items()
    return len(store.prompt_ids())


def test_snapshot_survives_sigkill_at_10_seeded_points(
    tinystories_656k: Path, tinystories_text: Path, tmp_path: Path
) -> None:
    lines = [ln.strip() for ln in tinystories_text.read_text(encoding="utf-8").splitlines() if ln.strip()]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(lines[:N_PROMPTS]) + "\n", encoding="utf-8")
    ref = tmp_path / "ref"
    n_writes = _run_in_process(_args(tinystories_656k, prompts, ref), ref)
    ref_store = ActivationStore.open(ref)
    assert ref_store.complete and ref_store.n_shards >= 8
    # one manifest per shard plus the first one: the writes are manifest, (shard, manifest) x n_shards
    assert n_writes == 2 * ref_store.n_shards + 1
    points = draw_points(n_writes, 10, SEED)

    outs = [tmp_path / f"kill-{p.k}-{p.phase}" for p in points]
    killed = run_many([_job(tinystories_656k, prompts, out, tmp_path / f"{out.name}.log", p)
                       for p, out in zip(points, outs, strict=True)])
    stored = []
    for point, out, result in zip(points, outs, killed, strict=True):
        assert result.killed, f"{point}: rc {result.returncode}\n{result.stderr[-2000:]}"
        assert result.n_writes == point.k
        stored.append(_check_consistent(out, ref))
        assert (out / LOCK_NAME).is_file()  # the dead writer's lock file stays; it must not block the resume

    for point, out, n_before in zip(points, outs, stored, strict=True):
        # rerun the same command (here in-process: same code path as the CLI, imports already paid)
        n_rewrites = _run_in_process(_args(tinystories_656k, prompts, out), out)
        assert leftover_temp_files(out) == [], point
        final = ActivationStore.open(out)
        assert final.complete and final.prompt_ids() == list(range(N_PROMPTS))
        # identical data: every shard byte for byte, and the same manifest (shards, checksums, norm sums)
        assert sorted(p.name for p in (out / "shards").iterdir()) == sorted(p.name for p in (ref / "shards").iterdir())
        for shard in (ref / "shards").iterdir():
            assert _sha(out / "shards" / shard.name) == _sha(shard), (point, shard.name)
        got = json.loads((out / "manifest.json").read_text())
        want = json.loads((ref / "manifest.json").read_text())
        # the norm sums are float sums over capture batches: a resume regroups the remaining prompts into other
        # batches, so they may differ in the last bits (float32 BLAS per batch); everything else is exact
        got_norm, want_norm = got.pop("norm"), want.pop("norm")
        assert got == want, point
        for side, layers in want_norm.items():
            for layer, stats in layers.items():
                assert got_norm[side][layer]["count"] == stats["count"], point
                for key in ("sum_sq", "scale"):
                    assert got_norm[side][layer][key] == pytest.approx(stats[key], rel=1e-6), (point, key)
        # the resume skipped what the killed run had stored (checked via the rewrites it needed)
        remaining = ref_store.n_shards - _shards_for(ref_store, n_before)
        assert n_rewrites == (2 * remaining + 1 if remaining else 2), point


def _shards_for(store: ActivationStore, n_prompts: int) -> int:
    """How many of the reference's shards hold the first ``n_prompts`` prompts."""
    total, count = 0, 0
    for shard in store.manifest.shards:
        if total >= n_prompts:
            break
        total += len(shard.prompt_ids)
        count += 1
    assert total == n_prompts
    return count
