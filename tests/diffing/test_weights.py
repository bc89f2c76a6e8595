from __future__ import annotations

import copy

import pytest
import torch

from difflib_models.diffing.weights import (
    full_weight_deltas,
    lora_weight_deltas,
    summarise_deltas,
    weight_deltas,
)
from difflib_models.errors import ConfigError
from tests.helpers.tiny_models import make_tiny, make_tiny_lora


def test_full_deltas_recover_planted_change() -> None:
    base = make_tiny("llama")
    ft = copy.deepcopy(base)
    delta = torch.randn_like(ft.model.layers[1].mlp.up_proj.weight) * 0.005
    with torch.no_grad():
        ft.model.layers[1].mlp.up_proj.weight += delta
        ft.model.layers[2].self_attn.q_proj.weight.mul_(2.0)
    rows = {r.name: r for r in full_weight_deltas(base, ft)}
    assert set(rows) == {"model.layers.1.mlp.up_proj.weight", "model.layers.2.self_attn.q_proj.weight"}
    up = rows["model.layers.1.mlp.up_proj.weight"]
    assert up.delta_fro == pytest.approx(float(delta.double().norm()), rel=1e-4)
    assert up.block == 1 and up.kind == "full"
    q = rows["model.layers.2.self_attn.q_proj.weight"]
    assert q.relative == pytest.approx(1.0, rel=1e-6)  # doubling a matrix changes it by exactly its own norm
    summary = summarise_deltas(list(rows.values()))
    assert set(summary["per_block_delta_fro"]) == {"1", "2"}
    assert summary["top_relative"][0] == "model.layers.2.self_attn.q_proj.weight"


def test_identical_models_have_no_delta() -> None:
    base = make_tiny("llama")
    assert full_weight_deltas(base, copy.deepcopy(base)) == []
    rows = full_weight_deltas(base, copy.deepcopy(base), include_unchanged=True)
    assert rows and all(r.delta_fro == 0.0 for r in rows)


def test_full_deltas_reject_other_architecture() -> None:
    with pytest.raises(ConfigError, match="shape"):
        full_weight_deltas(make_tiny("llama"), make_tiny("llama", intermediate_size=48))
    with pytest.raises(ConfigError, match="parameter names differ"):
        full_weight_deltas(make_tiny("llama"), make_tiny("gpt2"))


def test_lora_norms_match_explicit_delta_without_merging() -> None:
    model = make_tiny_lora(r=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = lora_weight_deltas(model)
    assert len(rows) == 3 * 3  # q_proj, v_proj, down_proj in 3 blocks
    for r in rows:
        module = model.get_submodule("base_model.model." + r.name)
        explicit = module.get_delta_weight("default").detach().double()
        assert r.delta_fro == pytest.approx(float(explicit.norm()), rel=1e-6)
        assert r.rank == 4
        assert r.relative == pytest.approx(r.delta_fro / float(module.base_layer.weight.double().norm()))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing merged
    summary = weight_deltas(model)
    assert summary["kind"] == "lora" and summary["n_modules"] == 9
    total = sum(r.delta_fro**2 for r in rows) ** 0.5
    assert summary["total_delta_fro"] == pytest.approx(total)


def test_lora_unknown_adapter_is_config_error() -> None:
    with pytest.raises(ConfigError, match="default"):
        lora_weight_deltas(make_tiny_lora(), adapter_name="nope")
    with pytest.raises(ConfigError):
        lora_weight_deltas(make_tiny("llama"))
