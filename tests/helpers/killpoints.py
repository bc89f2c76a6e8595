"""Kill a real process with SIGKILL at a chosen atomic write, for crash-consistency tests.

Every durable output of the library goes through ``difflib_models.io.atomic_write`` (temp file in the target
directory, fsync, ``os.replace``). The child process runs its target under a small wrapper that counts the
``os.replace`` calls whose destination lies under ``root`` and sends itself SIGKILL right *before* or right *after*
the k-th one (phase ``before``: the temp file is complete but not yet renamed; ``after``: the new file is in
place, everything after it is lost). Nothing in the library knows about this: the kill is a real SIGKILL of a real
process, only its moment is chosen (seeded) instead of left to a timer.

A reference run with ``kill_at=None`` reports how many such writes the target makes, so kill points can be drawn
from ``1..n`` with a seeded generator.

The processes are forked from a forkserver that has imported torch, transformers, Lightning and the CLI once
(``PRELOAD``): a fresh interpreter pays ~6 s of CPU for those imports, 30 times in the three kill tests. Each job is
still its own process (own memory, own file descriptors, killed with a real SIGKILL); the forkserver ran no torch
op, so no thread pool is inherited. The caller's environment (as when it starts the job) is set in the
child, after those imports: a variable read at import time by a preloaded module keeps the forkserver's value.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_WRAPPER = r"""
import json, os, runpy, signal, sys
from pathlib import Path

root = os.path.realpath(os.environ["KILLPOINT_ROOT"])
kill_at = os.environ.get("KILLPOINT_AT")  # "k:before" / "k:after" / ""
log = os.environ["KILLPOINT_LOG"]
k_kill, phase = (int(kill_at.split(":")[0]), kill_at.split(":")[1]) if kill_at else (0, "")
count = 0
targets = []
_replace = os.replace


def replace(src, dst, *args, **kwargs):
    global count
    inside = os.path.realpath(os.fspath(dst)).startswith(root + os.sep)
    if inside:
        count += 1
        targets.append(os.path.relpath(os.path.realpath(os.fspath(dst)), root))
        with open(log, "w") as fh:  # what was renamed so far (the test reads it after the kill)
            json.dump({"count": count, "targets": targets}, fh)
        if count == k_kill and phase == "before":
            os.kill(os.getpid(), signal.SIGKILL)
    result = _replace(src, dst, *args, **kwargs)
    if inside and count == k_kill and phase == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return result


os.replace = replace
mode, target = sys.argv[1], sys.argv[2]
sys.argv = [target, *sys.argv[3:]]
if mode == "module":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    runpy.run_path(target, run_name="__main__")
"""


@dataclass(frozen=True)
class KillPoint:
    k: int  # the k-th atomic rename under root (1-based)
    phase: str  # "before" or "after" it

    def __str__(self) -> str:
        return f"{self.k}:{self.phase}"


@dataclass
class RunResult:
    returncode: int
    n_writes: int
    targets: list[str]
    stderr: str

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def draw_points(n_writes: int, n_points: int, seed: int, *, first: int = 1) -> list[KillPoint]:
    """``n_points`` distinct seeded kill points among writes ``first..n_writes`` (both phases)."""
    pool = [KillPoint(k, phase) for k in range(first, n_writes + 1) for phase in ("before", "after")]
    if len(pool) < n_points:
        raise ValueError(f"only {len(pool)} kill points available, {n_points} requested")
    return sorted(random.Random(seed).sample(pool, n_points), key=lambda p: (p.k, p.phase))


# imported once by the forkserver the jobs are forked from (a module that fails to import is skipped)
PRELOAD = ["torch", "transformers", "lightning.pytorch", "safetensors.torch", "matplotlib.pyplot",
           "difflib_models.cli.app"]
_context: multiprocessing.context.ForkServerContext | None = None


def _forkserver() -> multiprocessing.context.ForkServerContext:
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _context = ctx
    return _context


def _child(mode: str, target: str, args: list[str], env: dict[str, str], stderr_path: str) -> None:
    """In the forked job: its environment, stdout to /dev/null, stderr to a file, then the wrapper."""
    os.environ.update(env)
    os.chdir(ROOT)
    if ROOT.as_posix() not in sys.path:
        sys.path.insert(0, ROOT.as_posix())
    for fd, path in ((1, os.devnull), (2, stderr_path)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(handle, fd)
        os.close(handle)
    sys.argv = ["killpoint", mode, target, *args]
    exec(compile(_WRAPPER, "<killpoint wrapper>", "exec"), {"__name__": "__killpoint__"})  # noqa: S102


def start(
    target: str,
    args: list[str],
    *,
    root: Path,
    log: Path,
    kill_at: KillPoint | None,
    module: bool = True,
    env: dict[str, str] | None = None,
) -> multiprocessing.process.BaseProcess:
    """Start ``python -m target args`` (or ``python target args`` with ``module=False``) under the wrapper, in a
    process forked from the preloaded forkserver."""
    environ = {
        **os.environ,  # the caller's environment now (the forkserver's is the one it had when it started)
        "KILLPOINT_ROOT": str(root),
        "KILLPOINT_AT": str(kill_at) if kill_at else "",
        "KILLPOINT_LOG": str(log),
        "DIFFLIB_MODELS_NO_PROGRESS": "1",
        **(env or {}),
    }
    proc = _forkserver().Process(target=_child, args=("module" if module else "path", target, list(args), environ,
                                                      str(log) + ".stderr"))
    proc.start()
    return proc


def finish(proc: multiprocessing.process.BaseProcess, log: Path, timeout: float = 300) -> RunResult:
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
    err_path = Path(str(log) + ".stderr")
    err = err_path.read_text(errors="replace") if err_path.is_file() else ""
    data = json.loads(log.read_text()) if log.is_file() else {"count": 0, "targets": []}
    return RunResult(int(proc.exitcode if proc.exitcode is not None else -signal.SIGKILL), int(data["count"]),
                     list(data["targets"]), err)


def run_many(jobs: list[dict], parallel: int = 2) -> list[RunResult]:
    """Run ``start(**job)`` for every job, ``parallel`` at a time; results in job order."""
    results: list[RunResult | None] = [None] * len(jobs)
    for i in range(0, len(jobs), parallel):
        batch = [(j, start(**jobs[j])) for j in range(i, min(i + parallel, len(jobs)))]
        for j, proc in batch:
            results[j] = finish(proc, jobs[j]["log"])
    return [r for r in results if r is not None]


def leftover_temp_files(root: Path) -> list[Path]:
    """Temp files of atomic writes (``.NAME.XXXX.tmp``) under ``root``."""
    return sorted(p for p in root.rglob(".*.tmp") if p.is_file())


class WriteCounter:
    """In-process twin of the wrapper's count: atomic renames under ``root`` while the context is active."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self.targets: list[str] = []

    @property
    def n_writes(self) -> int:
        return len(self.targets)

    def __enter__(self) -> WriteCounter:
        self._replace = os.replace

        def replace(src, dst, *args, **kwargs):  # noqa: ANN001, ANN202 - os.replace's signature
            real = os.path.realpath(os.fspath(dst))
            if real.startswith(self.root + os.sep):
                self.targets.append(os.path.relpath(real, self.root))
            return self._replace(src, dst, *args, **kwargs)

        os.replace = replace
        return self

    def __exit__(self, *exc: object) -> None:
        os.replace = self._replace
