"""Early stop only where can_stop_early allows: refused under FSDP2 (fully_shard), where the reader's values
equal the full forward's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from difflib_models.capture.capture import capture_batch, forward_inputs
from difflib_models.hooks import (
    BlockReader,
    EarlyStop,
    all_positions,
    can_stop_early,
    read_blocks,
    token_index,
)
from difflib_models.hooks import early_stop as early_stop_module
from difflib_models.hooks.reader import last_token_index
from difflib_models.models.hookpoints import find_final_norm
from difflib_models.persona.filtering.scoring import project_pairs
from difflib_models.persona.shift.core import probe_encoded
from difflib_models.persona.traits.chat import EncodedPair
from tests.helpers.tiny_models import make_tiny, tiny_batch


def test_early_stop_is_refused_under_fsdp2_and_the_values_equal_the_full_forward(tmp_path: Path) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    assert not dist.is_initialized()
    plain = make_tiny("llama")
    ids, am = tiny_batch([5, 3, 4], padding_side="left")
    kwargs = forward_inputs(plain, ids, am)
    select = token_index(last_token_index(am))
    with torch.no_grad():
        ref = read_blocks(plain, [0, 1], select, early_stop=False, **kwargs)
    ref_capture = capture_batch(plain, ids, am, [0, 1], stop_early=False)
    ref_probe = probe_encoded(plain, [[1, 5, 6], [1, 7], [1, 8, 9, 10]], 0, [1], batch_size=2, stop_early=False)
    pairs = [EncodedPair(ids=[1, 5, 6, 7, 8], prompt_len=2), EncodedPair(ids=[1, 9, 10], prompt_len=1)]
    unit = torch.randn(32, generator=torch.Generator().manual_seed(4))
    ref_proj = project_pairs(plain, pairs, 1, unit / unit.norm(), pad_token_id=0, batch_size=4)
    unit = unit / unit.norm()

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", world_size=1, rank=0)
    try:
        sharded = make_tiny("llama")
        mesh = init_device_mesh("cpu", (1,))
        for block in sharded.model.layers:
            fully_shard(block, mesh=mesh)
        fully_shard(sharded, mesh=mesh)
        assert not can_stop_early(sharded)
        decision = EarlyStop.decide(sharded, True)  # asked to stop, refused
        assert decision.requested is True and decision.allowed is False
        block2_calls: list[int] = []
        with torch.no_grad(), BlockReader(sharded, [2], all_positions()) as spy:
            spy.select = lambda h: block2_calls.append(1) or h  # blocks.2 runs only in a full forward
            got = read_blocks(sharded, [0, 1], select, early_stop=True, **kwargs)
            assert block2_calls == [1]
            got_capture = capture_batch(sharded, ids, am, [0, 1])  # default: stop where safe, i.e. not here
            assert block2_calls == [1, 1]
            got_probe = probe_encoded(sharded, [[1, 5, 6], [1, 7], [1, 8, 9, 10]], 0, [1], batch_size=2,
                                      stop_early=True)
            assert block2_calls == [1, 1, 1, 1]  # two probe batches, each a full forward
            got_proj = project_pairs(sharded, pairs, 1, unit, pad_token_id=0, batch_size=4)  # the data filter
            assert block2_calls == [1, 1, 1, 1, 1]  # it too ran the sharded model to the end
        final_norm = find_final_norm(sharded)
        assert final_norm is not None and not final_norm._forward_hooks
    finally:
        dist.destroy_process_group()
    for layer in (0, 1):
        torch.testing.assert_close(got[layer], ref[layer], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got_capture.acts[layer], ref_capture.acts[layer], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got_probe[1], ref_probe[1], atol=1e-6, rtol=1e-5)
    for got_a, ref_a in zip(got_proj, ref_proj, strict=True):
        assert got_a.tolist() == pytest.approx(ref_a.tolist(), abs=1e-5)


def test_a_decision_is_taken_once_and_false_never_walks_the_modules(monkeypatch) -> None:
    calls: list[int] = []
    real = early_stop_module.can_stop_early
    monkeypatch.setattr(early_stop_module, "can_stop_early", lambda m: calls.append(1) or real(m))
    model = make_tiny("llama")
    assert EarlyStop.decide(model, False).allowed is False and calls == []
    decision = EarlyStop.decide(model)
    assert decision.allowed is True and calls == [1]
    assert EarlyStop.decide(model, decision) is decision and calls == [1]
    monkeypatch.setattr(early_stop_module, "can_stop_early", lambda m: False)  # e.g. FSDP, DDP, offloading
    assert EarlyStop.decide(model, True).allowed is False


def test_can_stop_early_refuses_accelerate_hooks_and_fsdp2_classes_and_allows_plain_models() -> None:
    """The attribute checks look at the instance dict (accelerate's ``_hf_hook``) and the class (FSDP2's
    ``_get_fsdp_state``), anywhere in the module tree."""
    model = make_tiny("llama")
    assert can_stop_early(model)
    model.model.layers[1].mlp._hf_hook = object()  # what accelerate.hooks.add_hook_to_module sets
    assert not can_stop_early(model)

    class FakeSharded(torch.nn.Linear):
        def _get_fsdp_state(self) -> None:
            return None

    other = make_tiny("llama")
    other.lm_head = FakeSharded(32, other.config.vocab_size)
    assert not can_stop_early(other)
