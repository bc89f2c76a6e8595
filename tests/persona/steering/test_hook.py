"""Steering: added exactly once, at the intended positions, with and without a KV cache; removed in finally."""

from __future__ import annotations

import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.persona.steering.hook import SteeringHook, median_residual_norm, steer, steering_delta
from tests.helpers.tiny_models import HIDDEN, make_tiny, make_tiny_lora, tiny_batch


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return make_tiny("llama")


def _vec(seed: int = 3) -> torch.Tensor:
    return torch.randn(HIDDEN, generator=torch.Generator().manual_seed(seed))


def _block_out(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, layer: int) -> torch.Tensor:
    """Output of block `layer` as the next block sees it (a hook registered after any steering hook; HF's
    output_hidden_states is recorded by its own earlier hooks and would not show the steering)."""
    seen: list[torch.Tensor] = []
    block = model.get_base_model().model.layers[layer] if hasattr(model, "peft_config") else model.model.layers[layer]
    handle = block.register_forward_hook(lambda m, a, o: seen.append(o[0] if isinstance(o, tuple) else o))
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("layer", [0, 1])
def test_all_positions_added_exactly_once(model: torch.nn.Module, layer: int) -> None:
    ids, mask = tiny_batch([7, 5])
    v = _vec()
    base = _block_out(model, ids, mask, layer)
    with steer(model, layer, v, alpha=2.5) as hook:
        steered = _block_out(model, ids, mask, layer)
    diff = steered - base
    torch.testing.assert_close(diff, (2.5 * v).expand_as(diff), atol=1e-5, rtol=1e-5)
    assert hook.n_forwards == 1 and hook.n_positions == 2 * 7
    # removed: the same forward again is unsteered
    torch.testing.assert_close(_block_out(model, ids, mask, layer), base)
    assert not model.model.layers[layer]._forward_hooks


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_prompt_and_response_positions(model: torch.nn.Module, padding_side: str) -> None:
    lengths, prompt_lens = [8, 6], [3, 4]
    ids, mask = tiny_batch(lengths, padding_side=padding_side)
    v = _vec()
    base = _block_out(model, ids, mask, 0)
    offs = [0, 0] if padding_side == "right" else [0, 2]
    for positions in ("prompt", "response"):
        with steer(model, 0, v, alpha=1.0, positions=positions, prompt_lengths=prompt_lens, attention_mask=mask):
            steered = _block_out(model, ids, mask, 0)
        moved = (steered - base).norm(dim=-1) > 1e-4  # [B, T]
        expected = torch.zeros_like(moved)
        for row, (p, off) in enumerate(zip(prompt_lens, offs, strict=True)):
            if positions == "prompt":
                expected[row, : off + p] = True
            else:  # the last prompt token (it predicts the first response token) and every later column
                expected[row, off + p - 1 :] = True
        assert torch.equal(moved, expected), positions
        # where steered, exactly one delta was added
        torch.testing.assert_close((steered - base)[moved], v.expand(int(moved.sum()), -1), atol=1e-5, rtol=1e-5)


def test_generate_with_kv_cache_matches_teacher_forced(model: torch.nn.Module) -> None:
    ids, mask = tiny_batch([6, 6], seed=1)
    v = _vec() * 4.0
    gen_kwargs = dict(max_new_tokens=5, do_sample=False, output_scores=True, return_dict_in_generate=True,
                      pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        plain = model.generate(input_ids=ids, attention_mask=mask, **gen_kwargs)
        with steer(model, 1, v, alpha=1.0, positions="response") as hook:
            out = model.generate(input_ids=ids, attention_mask=mask, use_cache=True, **gen_kwargs)
    seq = out.sequences
    # KV cache: prompt forward (last prompt column steered) + 4 single-token forwards, each position once
    assert hook.n_forwards == 5 and hook.n_positions == 2 * (1 + 4)
    # the first generated token is steered: its scores differ from the unsteered generation
    assert not torch.allclose(out.scores[0], plain.scores[0], atol=1e-3)
    # teacher-force the generated sequence with the same steering: identical logits at every step
    full_mask = torch.ones_like(seq)
    with torch.no_grad(), steer(model, 1, v, alpha=1.0, positions="response", prompt_lengths=[6, 6]):
        logits = model(input_ids=seq, attention_mask=full_mask).logits
    for k, score in enumerate(out.scores):
        torch.testing.assert_close(logits[:, 5 + k], score, atol=1e-4, rtol=1e-4)


def test_generate_all_positions_each_once(model: torch.nn.Module) -> None:
    ids, mask = tiny_batch([5, 5], seed=2)
    with torch.no_grad(), steer(model, 0, _vec(), alpha=1.0, positions="all") as hook:
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0,
                       eos_token_id=None)
    assert hook.n_positions == 2 * (5 + 3)  # 5 prompt columns + 3 fed-back tokens, per row


def test_prompt_mode_under_generate_leaves_generated_tokens_alone(model: torch.nn.Module) -> None:
    ids, mask = tiny_batch([5], seed=4)
    with torch.no_grad(), steer(model, 0, _vec(), alpha=3.0, positions="prompt") as hook:
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0,
                       eos_token_id=None)
    assert hook.n_forwards == 4 and hook.n_positions == 5


def test_removed_on_error_and_not_reentrant(model: torch.nn.Module) -> None:
    ids, mask = tiny_batch([4])
    base = _block_out(model, ids, mask, 0)
    with pytest.raises(RuntimeError, match="boom"), steer(model, 0, _vec(), alpha=1.0):
        raise RuntimeError("boom")
    torch.testing.assert_close(_block_out(model, ids, mask, 0), base)
    hook = SteeringHook(model, 0, _vec()).attach()
    with pytest.raises(ConfigError, match="already attached"):
        hook.attach()
    hook.remove()
    assert not hook.attached and not model.model.layers[0]._forward_hooks


def test_training_forward_preventative_steering_has_gradients() -> None:
    model = make_tiny("llama").train()
    ids, mask = tiny_batch([6, 6])
    v = _vec()
    loss0 = model(input_ids=ids, attention_mask=mask, labels=ids).loss
    with steer(model, 1, v, alpha=3.0):
        loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
        loss.backward()
    assert abs(float(loss.detach()) - float(loss0.detach())) > 1e-4
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # gradient through the steered block reaches block 0's weights
    assert float(model.model.layers[0].mlp.down_proj.weight.grad.abs().sum()) > 0


def test_peft_model_is_steered_through_wrapper() -> None:
    model = make_tiny_lora()
    ids, mask = tiny_batch([5])
    v = _vec()
    base = _block_out(model, ids, mask, 0)
    with steer(model, 0, v, alpha=1.0):
        st = _block_out(model, ids, mask, 0)
    torch.testing.assert_close(st - base, v.expand_as(st - base), atol=1e-5, rtol=1e-5)


def test_units_reference_norm(model: torch.nn.Module) -> None:
    v = _vec()
    d = steering_delta(v, 2.0, reference_norm=5.0)
    assert abs(float(d.norm()) - 10.0) < 1e-4
    assert float(torch.nn.functional.cosine_similarity(d, v, dim=0)) > 0.9999
    torch.testing.assert_close(steering_delta(v, -0.5), -0.5 * v)
    ids, mask = tiny_batch([6, 4])
    r = median_residual_norm(model, ids, mask, 1)
    acts = _block_out(model, ids, mask, 1)
    norms = torch.cat([acts[0, 1:6].norm(dim=-1), acts[1, 1:4].norm(dim=-1)])  # real tokens without BOS
    assert abs(r - float(norms.median())) < 1e-4


def test_bad_input_is_config_error(model: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="positions"):
        SteeringHook(model, 0, _vec(), positions="middle")
    with pytest.raises(ConfigError, match="layer"):
        SteeringHook(model, 3, _vec())
    with pytest.raises(ConfigError, match="d_model"):
        SteeringHook(model, 0, torch.ones(HIDDEN + 1))
    with pytest.raises(ConfigError, match="alpha"):
        SteeringHook(model, 0, _vec(), alpha=float("nan"))
    with pytest.raises(ConfigError, match="prompt_lengths"):
        SteeringHook(model, 0, _vec(), positions="response", prompt_lengths=[0, 3])
    ids, mask = tiny_batch([5, 5, 5])
    with pytest.raises(ConfigError, match="batch size"), steer(model, 0, _vec(), positions="prompt",
                                                                prompt_lengths=[2, 2]):
        model(input_ids=ids, attention_mask=mask)


def test_generate_without_cache_needs_and_uses_prompt_lengths(model: torch.nn.Module) -> None:
    ids, mask = tiny_batch([6, 6], seed=5)
    v = _vec() * 4.0
    kw = dict(max_new_tokens=5, do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        with steer(model, 1, v, positions="response"):
            cached = model.generate(input_ids=ids, attention_mask=mask, use_cache=True, **kw)
        with steer(model, 1, v, positions="response", prompt_lengths=[6, 6]) as hook:
            uncached = model.generate(input_ids=ids, attention_mask=mask, use_cache=False, **kw)
    assert torch.equal(cached, uncached)
    # each no-cache step recomputes the whole sequence: steps see 6, 7, ..., 10 columns; steered from column 5 on
    assert hook.n_forwards == 5 and hook.n_positions == 2 * sum(range(1, 6))
