"""Throughput, peak memory and FVE of our BatchTopK crosscoder vs dictionary_learning's BatchTopKTrainer.

Both train on the same activations, one after the other in one run of this script, each in its own subprocess
(so peak RSS is per trainer), with the same dictionary size, k, batch size, learning rate and thread count:

    .venv/bin/python benchmarks/bench_crosscoder.py            # writes benchmarks/results/crosscoder.json

The peer (PyPI ``dictionary-learning`` 0.1.0) lives in its own virtualenv ``benchmarks/.venv-peer``, created by
``bash benchmarks/setup_peer.sh`` (torch==2.13.0 first, then the peer with ``--no-deps`` and its import
closure). A BatchTopK crosscoder over two sources is a BatchTopK SAE over the concatenated [base; ft] activations
(up to the ranking by summed decoder norms), so the peer trains on the flattened [B, 2 * d] batch. Activations: synthetic, generated from a planted sparse
dictionary (``make_synthetic_pairs``) at the width of two SmolLM2 layers (2 x 576), normalised per source.
The script never asserts timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER_PYTHON = ROOT / "benchmarks" / ".venv-peer" / "bin" / "python"


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_data(args: argparse.Namespace, path: Path) -> dict:
    import torch
    from safetensors.torch import save_file

    from difflib_models.crosscoder.sources import estimate_norm_scales
    from difflib_models.crosscoder.synthetic import make_synthetic_pairs

    n_tokens = args.batch_size * (args.pool_batches + 1)
    syn = make_synthetic_pairs(
        args.d_per_source,
        n_shared=args.planted * 3 // 4,
        n_ft_only=args.planted // 16,
        n_base_only=args.planted // 16,
        n_changed=args.planted // 16,
        n_artifact=args.planted // 16,
        n_tokens=n_tokens,
        p_active=args.p_active,
        noise=0.05,
        seed=0,
    )
    acts = syn.acts * estimate_norm_scales(syn.acts)[None, :, None]
    save_file({"acts": acts.contiguous()}, str(path))
    l0_true = float((syn.coeffs_ft > 0).sum(-1).float().mean())
    del syn
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return {
        "n_tokens": n_tokens,
        "planted_latents": args.planted,
        "true_l0_per_token": l0_true,
        "kind": "synthetic planted dictionary (difflib_models.crosscoder.synthetic), per-source normalised",
    }


# ------------------------------------------------------------------------------------------------ workers
def _fve(x, x_hat) -> float:
    return float(1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def worker(args: argparse.Namespace) -> dict:
    import torch
    from safetensors.torch import load_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    acts = load_file(args.data)["acts"]
    b = args.batch_size
    pool, held_out = acts[:-b], acts[-b:]
    n_pool = pool.shape[0] // b
    lr = args.lr
    warmup_steps = max(1, int(0.05 * args.steps))
    decay_start = int(0.8 * args.steps)
    rss0 = _rss_mb()
    if args.worker in ("ours", "ours_dense", "ours_dfc"):
        from difflib_models.crosscoder.config import CrosscoderConfig
        from difflib_models.crosscoder.lightning_module import lr_factor
        from difflib_models.crosscoder.model import Crosscoder

        cfg = CrosscoderConfig(
            d_model=acts.shape[2],
            n_sources=acts.shape[1],
            dict_size=args.dict_size,
            activation="batchtopk",
            k=args.k,
            lr=lr,
            steps=args.steps,
            batch_size=b,
            warmup_frac=warmup_steps / args.steps,
            decay_frac=0.2,
            # ours_dfc: a dedicated feature crosscoder, 1/32 of the latents reserved per model
            exclusive_latents=args.dict_size // 32 if args.worker == "ours_dfc" else 0,
            exclusive_penalty=0.5,
        )
        model = Crosscoder(cfg, sparse=args.worker != "ours_dense")
        model.init_b_dec(pool[:b].mean(0))
        opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, cfg.steps, cfg.warmup_frac, cfg.decay_frac)
        )

        def step(i: int, x) -> float:
            out = model.training_step_output(x)
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            model.update_state(out.fired, out.min_kept_score)
            return float(out.loss)

        def evaluate() -> tuple[float, float]:
            with torch.no_grad():
                f = model.encode(held_out, use_threshold=False)
                return _fve(held_out, model.decode(f)), float((f > 0).sum(-1).float().mean())

        def batch(i: int):
            return pool[(i % n_pool) * b : (i % n_pool + 1) * b]
    else:
        from dictionary_learning.trainers.batch_top_k import BatchTopKTrainer

        flat_pool = pool.reshape(pool.shape[0], -1)
        flat_held = held_out.reshape(b, -1)
        trainer = BatchTopKTrainer(
            steps=args.steps,
            activation_dim=flat_pool.shape[1],
            dict_size=args.dict_size,
            k=args.k,
            layer=0,
            lm_name="bench",
            lr=lr,
            warmup_steps=warmup_steps,
            decay_start=decay_start,
            threshold_start_step=0,
            seed=0,
            device="cpu",
        )

        def step(i: int, x) -> float:
            return float(trainer.update(i, x))

        def evaluate() -> tuple[float, float]:
            with torch.no_grad():
                f = trainer.ae.encode(flat_held, use_threshold=False)
                return _fve(flat_held, trainer.ae.decode(f)), float((f > 0).sum(-1).float().mean())

        def batch(i: int):
            return flat_pool[(i % n_pool) * b : (i % n_pool + 1) * b]

    times, cpu, losses = [], [], []
    for i in range(args.steps):
        x = batch(i)
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(step(i, x))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    fve, l0 = evaluate()
    timed = times[args.warmup :]
    med = statistics.median(timed)
    med_cpu = statistics.median(cpu[args.warmup :])
    return {
        "variant": args.worker,
        "steps": args.steps,
        "timed_steps": len(timed),
        "step_s_median": med,
        "step_s_mean": statistics.fmean(timed),
        "step_s_all": times,
        "tokens_per_s": b / med,
        "step_cpu_s_median": med_cpu,
        "step_cpu_s_all": cpu,
        "tokens_per_cpu_s": b / med_cpu,
        "peak_rss_mb": _peak_mb(),
        "rss_before_model_mb": rss0,
        "peak_rss_delta_mb": _peak_mb() - rss0,
        "fve_held_out": fve,
        "l0_held_out": l0,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "torch_threads": torch.get_num_threads(),
    }


# ------------------------------------------------------------------------------------------------ driver
def run_round(args: argparse.Namespace, out: dict | None = None, save=None) -> tuple[dict, dict]:
    """Generate one data set and train every variant on it, each in its own subprocess; ``save()`` after each."""
    out = {} if out is None else out
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "acts.safetensors"
        data_info = make_data(args, data)
        for variant in args.variants.split(","):
            python = str(PEER_PYTHON) if variant == "peer" else sys.executable
            if variant == "peer" and not PEER_PYTHON.exists():
                out[variant] = {"error": f"{PEER_PYTHON} missing; create it with: bash benchmarks/setup_peer.sh"}
                continue
            passed = ("d_per_source", "dict_size", "k", "batch_size", "steps", "warmup", "lr", "threads")
            cmd = [python, __file__, "--worker", variant, "--data", str(data)]
            for name in passed:
                cmd += ["--" + name.replace("_", "-"), str(getattr(args, name))]
            env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(args.threads))
            print(f"running {variant} ...", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                out[variant] = {"error": proc.stderr[-2000:]}
                continue
            out[variant] = json.loads(proc.stdout)
            if save is not None:
                save()
            print(
                json.dumps({k: v for k, v in out[variant].items() if k != "step_s_all"}),
                file=sys.stderr,
                flush=True,
            )
    return data_info, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--d-per-source", type=int, default=576)
    p.add_argument("--dict-size", type=int, default=8192)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument(
        "--warmup", type=int, default=2, help="untimed first steps (peer: geometric median at step 0)"
    )
    p.add_argument(
        "--lr", type=float, default=None, help="default: 2e-4 / sqrt(n / 2^14) (the peer's default)"
    )
    p.add_argument("--planted", type=int, default=2048)
    p.add_argument("--p-active", type=float, default=0.02)
    p.add_argument("--pool-batches", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fve-steps", type=int, default=200, help="steps of the small FVE round (0: skip it)")
    p.add_argument("--variants", default="ours,peer", help="comma list of ours, ours_dense, ours_dfc, peer")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "crosscoder.json")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.lr is None:
        args.lr = 2e-4 / (args.dict_size / 2**14) ** 0.5
    if args.worker:
        json.dump(worker(args), sys.stdout)
        return
    sys.path.insert(0, str(ROOT))
    import torch

    results: dict = {
        "benchmark": "crosscoder BatchTopK training throughput",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "threads": args.threads,
            "load_avg_at_start": os.getloadavg(),
        },
        "note": "wall-clock rates depend on other load on the shared machine; tokens_per_cpu_s (process CPU "
        "time, all threads) is the load-robust comparison",
        "config": {
            "n_sources": 2,
            "d_per_source": args.d_per_source,
            "d_concat": 2 * args.d_per_source,
            "dict_size": args.dict_size,
            "k": args.k,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "untimed_warmup_steps": args.warmup,
            "lr": args.lr,
            "dtype": "float32",
            "device": "cpu",
        },
        "peer": {
            "package": "dictionary-learning==0.1.0",
            "class": "trainers.batch_top_k.BatchTopKTrainer",
            "venv": str(PEER_PYTHON.parent.parent.relative_to(ROOT)),
        },
        "results": {},
    }
    from difflib_models.io import atomic_write_json

    def save() -> None:
        atomic_write_json(args.out, results)

    results["data"], _ = run_round(args, results["results"], save)
    if args.fve_steps > 0:
        import copy

        small = copy.copy(args)
        small.d_per_source, small.dict_size, small.k, small.batch_size = 64, 1024, 16, 1024
        small.steps, small.planted, small.p_active, small.pool_batches = args.fve_steps, 256, 0.03, 16
        small.lr = 2e-4 / (small.dict_size / 2**14) ** 0.5
        data, res = run_round(small)
        results["fve_round"] = {
            "purpose": "FVE reached after equal steps (a smaller problem so that enough steps fit)",
            "config": {
                "d_per_source": 64,
                "dict_size": 1024,
                "k": 16,
                "batch_size": 1024,
                "steps": args.fve_steps,
                "lr": small.lr,
            },
            "data": data,
            "results": {
                v: {
                    k: r.get(k)
                    for k in (
                        "fve_held_out",
                        "l0_held_out",
                        "loss_first",
                        "loss_last",
                        "tokens_per_s",
                        "tokens_per_cpu_s",
                        "error",
                    )
                }
                for v, r in res.items()
            },
        }
    res = results["results"]
    if "tokens_per_s" in res.get("ours", {}) and "tokens_per_s" in res.get("peer", {}):
        results["speedup_tokens_per_s"] = res["ours"]["tokens_per_s"] / res["peer"]["tokens_per_s"]
        results["speedup_tokens_per_cpu_s"] = (
            res["ours"]["tokens_per_cpu_s"] / res["peer"]["tokens_per_cpu_s"]
        )
        results["memory_ratio_peak_delta"] = (
            res["ours"]["peak_rss_delta_mb"] / res["peer"]["peak_rss_delta_mb"]
        )
        results["fve_difference"] = res["ours"]["fve_held_out"] - res["peer"]["fve_held_out"]
        # headline names picked up by `python -m benchmarks` (ratio* / goal*)
        results["ratio_tokens_per_s"] = results["speedup_tokens_per_s"]
        results["ratio_tokens_per_cpu_s"] = results["speedup_tokens_per_cpu_s"]
        results["goal_ratio_tokens_per_s"] = 2.0
    args.out.parent.mkdir(parents=True, exist_ok=True)

    results["machine"]["load_avg_at_end"] = os.getloadavg()
    atomic_write_json(args.out, results)
    print(json.dumps({k: v for k, v in results.items() if k not in ("results",)}, indent=2))


if __name__ == "__main__":
    main()
