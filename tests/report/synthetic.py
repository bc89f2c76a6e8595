"""A synthetic but complete report (every section filled) for renderer and schema tests."""

from __future__ import annotations

import random
from typing import Any

from difflib_models.report.builder import new_report

EVIL_SCRIPT = "<script>alert(1)</script>"
EVIL_IMG = '"><img src=x onerror=alert(2)>'


def identity(name: str, seed: int) -> dict[str, Any]:
    return {"name": name, "source": "hf_dir", "path": f"/models/{name}", "weight_hash": f"{seed:064x}",
            "adapter_hash": None, "revision": None, "base": None}


def synthetic_report(n_latents: int = 20, *, seed: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    report = new_report("gate", base=identity("base-model", 1), candidate=identity(f"cand {EVIL_SCRIPT}", 2),
                        hook_points={"block_path": "model.layers", "n_layers": 4}, seeds={"probe": 0})
    report["drift"] = {"layers": [{"layer": i, "kl_mean": 0.01 * (i + 1), "cos_mean": 1 - 0.02 * i}
                                  for i in range(4)]}
    latents = []
    for i in range(n_latents):
        toks = ["The", " cat", EVIL_SCRIPT, " sat", EVIL_IMG]
        latents.append({"latent": i, "class": rng.choice(["shared", "ft_only", "base_only"]),
                        "rel_norm": rng.random(), "flags": ["latent_scaling_ok"] if i % 2 else [],
                        "contexts": [{"tokens": toks, "index": 2, "activation": 3.5}]})
    report["crosscoder"] = {
        "metrics": {"fve": 0.8, "dead_fraction": 0.01, "l0": 32.0},
        "latent_classes": {"shared": 10, "ft_only": 5, "base_only": 5},
        "relative_decoder_norms": [rng.random() for _ in range(max(n_latents, 50))],
        "top_latents": latents,
    }
    report["persona"] = {"null_kind": "covariance", "traits": [
        {"trait": "evil", "layer": 2, "polarity": "undesirable", "shift": 1.5, "shift_z": 3.2, "shift_frac": 0.3,
         "null_percentile": 0.99, "null_shifts": [rng.gauss(0, 0.3) for _ in range(32)],
         "base_projections": [rng.gauss(0, 1) for _ in range(20)],
         "candidate_projections": [rng.gauss(1.5, 1) for _ in range(20)], "signal_ok": True},
        {"trait": "sycophancy", "layer": 2, "polarity": "undesirable", "shift": 0.1, "shift_z": 0.2,
         "shift_frac": 0.01, "null_percentile": 0.4, "signal_ok": True},
    ]}
    report["monitor"] = {"series": [{"trait": "evil", "layer": 2, "metric": "shift_z", "steps": [0, 10, 20],
                                     "values": [0.0, 1.0, 2.5]}]}
    report["data_filter"] = {"n": 100, "n_flagged": 7, "flagged_share": 0.07}
    report["behavioural"] = {"mode": "ab_probability", "judge": None, "models": {
        "base": {"n": 40, "n_misaligned": 4, "rate": 0.1, "ci_low": 0.04, "ci_high": 0.23},
        "candidate": {"n": 40, "n_misaligned": 10, "rate": 0.25, "ci_low": 0.14, "ci_high": 0.4}},
        "items": [{"question": f"Q {EVIL_IMG}", "model": "candidate", "score": 0.7, "misaligned": True}]}
    report["adl"] = {"layer": 2, "tokens": [EVIL_SCRIPT, "hello"]}
    report["checks"] = [
        {"id": "evil-shift", "metric": "persona.evil.shift_z", "value": 3.2, "threshold": 3.0, "comparator": "<",
         "severity": "fail", "status": "fail", "source": "published", "details": {"message": "too far"}},
        {"id": "syc-shift", "metric": "persona.sycophancy.shift_z", "value": 0.2, "threshold": 2.0,
         "comparator": "<", "severity": "warn", "status": "pass", "source": "policy", "details": {}},
        {"id": "warn-one", "metric": "drift.layers[3].kl_mean", "value": 0.04, "threshold": 0.03,
         "comparator": "<=", "severity": "warn", "status": "warn", "source": "calibrated", "details": {}},
        {"id": "err-one", "metric": "crosscoder.metrics.missing", "value": None, "threshold": 1.0,
         "comparator": "<", "severity": "fail", "status": "error", "source": "policy",
         "details": {"message": "metric not in report"}},
        {"id": "skip-one", "metric": "data_filter.flagged_share", "value": None, "threshold": 0.1,
         "comparator": "<", "severity": "fail", "status": "skipped", "source": "policy", "details": {}},
    ]
    report["verdict"] = "fail"
    report["verdict_reason"] = "1 check failed"
    report["notes"] = [f"note with {EVIL_SCRIPT}"]
    return report
