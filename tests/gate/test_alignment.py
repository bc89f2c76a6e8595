from __future__ import annotations

import pytest
import torch

from difflib_models.crosscoder.config import CrosscoderConfig
from difflib_models.crosscoder.model import Crosscoder
from difflib_models.errors import ConfigError
from difflib_models.gate.alignment import crosscoder_alignment, persona_alignment, source_layers
from difflib_models.gate.engine import evaluate
from difflib_models.gate.policy import policy_from_dict
from tests.report.synthetic import synthetic_report

D = 16


def _crosscoder() -> tuple[Crosscoder, torch.Tensor]:
    cfg = CrosscoderConfig(d_model=D, n_sources=2, dict_size=8, k=2, source_names=["base/blocks.3", "ft/blocks.3"])
    cc = Crosscoder(cfg)
    v = torch.zeros(D)
    v[0] = 1.0
    other = torch.zeros(D)
    other[1] = 1.0
    with torch.no_grad():
        cc.W_dec.zero_()
        cc.W_dec[:, 0, :] = other  # every latent exists in the base ...
        for i in (0, 1, 2):  # ... except 0, 1, 2: fine-tune-only
            cc.W_dec[i, 0, :] = 0.0
        cc.W_dec[0, 1, :] = 2.0 * v  # aligned (cos 1)
        cc.W_dec[1, 1, :] = -v + other  # cos -0.707: counts by abs value
        cc.W_dec[2, 1, :] = other  # orthogonal
        cc.W_dec[3:, 1, :] = v  # shared latents along v do not count
    return cc, v


def test_persona_alignment_counts_ft_only_latents(tmp_path) -> None:
    cc, v = _crosscoder()
    out = persona_alignment(cc, {"evil": (3, v), "syc": (5, v)})
    assert out["evil"]["ft_only_latents"] == [0, 1, 2]
    assert out["evil"]["ft_only_cos"] == pytest.approx([1.0, -2 ** -0.5, 0.0], abs=1e-6)
    assert "not 5" in out["syc"]["error"]
    cc.save(tmp_path / "cc")
    assert crosscoder_alignment(tmp_path / "cc", {"evil": (3, v)})["evil"] == out["evil"]

    report = synthetic_report()
    report["crosscoder"]["persona_alignment"] = out
    pol = policy_from_dict({"checks": [
        {"id": "a", "metric": "crosscoder.ft_only_aligned", "trait": "evil", "comparator": "<=", "threshold": 1,
         "min_cos": 0.5},
        {"id": "b", "metric": "crosscoder.ft_only_aligned", "trait": "evil", "comparator": "<=", "threshold": 1,
         "min_cos": 0.9},
        {"id": "c", "metric": "crosscoder.ft_only_aligned", "trait": "syc", "comparator": "<=", "threshold": 1}]})
    checks = {c["id"]: c for c in evaluate(report, pol)["checks"]}
    assert (checks["a"]["value"], checks["a"]["status"]) == (2.0, "fail")
    assert (checks["b"]["value"], checks["b"]["status"]) == (1.0, "pass")
    assert checks["c"]["status"] == "error"


def test_source_layers() -> None:
    assert source_layers(["base/blocks.2", "base/blocks.7", "ft/blocks.2", "ft/blocks.7"], 2) == [2, 7]
    with pytest.raises(ConfigError):
        source_layers(["a", "b"], 1)
