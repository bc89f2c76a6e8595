"""probe_mode: eval + no grad inside; every module's own training flag and the grad mode restored after."""

from __future__ import annotations

import pytest
import torch

from difflib_models.hooks import probe_mode
from tests.helpers.tiny_models import make_tiny


def _flags(model: torch.nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def test_probe_mode_restores_a_submodule_frozen_in_eval_mode() -> None:
    model = make_tiny("llama")
    model.train()
    model.model.layers[0].eval()  # the user froze block 0 (and its children) in eval mode
    before = _flags(model)
    assert before["model.layers.0"] is False and before["model.layers.1"] is True and before[""] is True
    with probe_mode(model):
        assert not any(_flags(model).values())
        assert not torch.is_grad_enabled()
        model(input_ids=torch.tensor([[1, 2, 3]]))
    after = _flags(model)
    assert after == before
    assert model.model.layers[0].training is False and model.model.layers[1].training is True
    assert torch.is_grad_enabled()


def test_probe_mode_restores_flags_and_grad_mode_on_error() -> None:
    model = make_tiny("llama")
    model.train()
    model.model.layers[1].self_attn.eval()
    before = _flags(model)
    with pytest.raises(RuntimeError, match="probe failed"), probe_mode(model):
        raise RuntimeError("probe failed")
    assert _flags(model) == before and torch.is_grad_enabled()
    with torch.no_grad():  # an outer no-grad stays off afterwards
        with probe_mode(model):
            pass
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()


def test_capture_and_filter_keep_a_frozen_submodule_frozen() -> None:
    from difflib_models.capture.capture import capture_batch
    from difflib_models.persona.filtering.scoring import project_pairs
    from difflib_models.persona.traits.chat import EncodedPair

    model = make_tiny("llama")
    model.train()
    model.model.layers[2].eval()
    before = _flags(model)
    capture_batch(model, torch.tensor([[1, 5, 6]]), torch.ones(1, 3, dtype=torch.long), [0, 1])
    assert _flags(model) == before
    project_pairs(model, [EncodedPair(ids=[1, 5, 6, 7], prompt_len=2)], 1, torch.ones(32) / 32**0.5,
                  pad_token_id=0)
    assert _flags(model) == before
