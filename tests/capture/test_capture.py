"""Captured block outputs equal HF hidden states, on every tiny architecture, peft, and padding side."""

from __future__ import annotations

import pytest
import torch

from difflib_models.capture.capture import (
    ActivationCapture,
    CaptureBatch,
    capture_batch,
    forward_inputs,
)
from difflib_models.errors import ConfigError, DifflibError, NonFiniteActivationError
from difflib_models.models.hookpoints import find_final_norm, get_block, hidden_states_index
from tests.helpers.tiny_models import ARCHS, make_tiny, make_tiny_lora, tiny_batch

LENGTHS = [5, 9, 3, 7]


def _model(arch: str) -> torch.nn.Module:
    return make_tiny_lora() if arch == "peft-llama" else make_tiny(arch)


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("arch", [*ARCHS, "peft-llama"])
def test_capture_equals_hidden_states(arch: str, padding_side: str) -> None:
    model = _model(arch)
    ids, am = tiny_batch(LENGTHS, padding_side=padding_side)
    real = am.bool()
    for with_positions in (True, False):  # our position_ids and the model's own default
        kwargs = forward_inputs(model, ids, am) if with_positions else {"input_ids": ids, "attention_mask": am}
        with torch.no_grad(), ActivationCapture(model, [0, 1, 2]) as cap:
            cap.set_mask(real)
            out = model(**kwargs, output_hidden_states=True)
            acts = cap.pop()
        hs = out.hidden_states
        assert len(hs) == 4
        for i in (0, 1):
            assert acts[i].dtype == torch.float32 and acts[i].device.type == "cpu"
            assert acts[i].shape == (sum(LENGTHS), 32)
            torch.testing.assert_close(acts[i], hs[hidden_states_index(i)][real], atol=1e-6, rtol=0)
        # the last block differs from hidden_states[-1] by exactly the final norm
        last = acts[2]
        assert (last - hs[-1][real]).abs().max() > 1e-2
        with torch.no_grad():
            normed = find_final_norm(model)(last)
        torch.testing.assert_close(normed, hs[-1][real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt", "falcon", "peft-llama"])
def test_left_and_right_padding_give_the_same_tokens(arch: str) -> None:
    model = _model(arch)
    left = capture_batch(model, *tiny_batch(LENGTHS, padding_side="left"), [0, -1])
    right = capture_batch(model, *tiny_batch(LENGTHS, padding_side="right"), [0, -1])
    assert left.n_tokens == sum(LENGTHS) - len(LENGTHS)  # leading BOS skipped
    assert torch.equal(left.token_ids, right.token_ids)
    assert torch.equal(left.seq_index, right.seq_index)
    assert torch.equal(left.pos_index, right.pos_index)
    assert left.pos_index.min() == 1  # position 0 was the BOS
    for layer in (0, 2):
        torch.testing.assert_close(left.acts[layer], right.acts[layer], atol=1e-5, rtol=1e-5)


def test_capture_batch_rows_match_a_single_sequence_forward() -> None:
    model = make_tiny("llama")
    ids, am = tiny_batch(LENGTHS, padding_side="left")
    batch = capture_batch(model, ids, am, [1], skip_bos=False)
    row = 1
    seq = ids[row, am[row].bool()].unsqueeze(0)
    with torch.no_grad():
        hs = model(input_ids=seq, output_hidden_states=True).hidden_states[2][0]
    got = batch.acts[1][batch.seq_index == row]
    torch.testing.assert_close(got, hs, atol=1e-5, rtol=1e-5)
    assert batch.token_ids[batch.seq_index == row].tolist() == seq[0].tolist()
    assert batch.pos_index[batch.seq_index == row].tolist() == list(range(LENGTHS[row]))


def test_peft_adapter_changes_activations_and_disable_adapter_gives_base() -> None:
    peft_model = make_tiny_lora()
    ids, am = tiny_batch(LENGTHS)
    adapted = capture_batch(peft_model, ids, am, [2])
    with peft_model.disable_adapter():
        base_view = capture_batch(peft_model, ids, am, [2])
    plain = capture_batch(make_tiny("llama"), ids, am, [2])
    torch.testing.assert_close(base_view.acts[2], plain.acts[2], atol=1e-6, rtol=0)
    assert (adapted.acts[2] - plain.acts[2]).abs().max() > 1e-3


def test_hooks_removed_after_exception_and_on_exit() -> None:
    model = make_tiny("llama")
    blocks = [get_block(model, i) for i in range(3)]
    assert all(not b._forward_hooks for b in blocks)
    with pytest.raises(RuntimeError, match="boom"), ActivationCapture(model, [0, 2]) as cap:
        assert len(blocks[0]._forward_hooks) == 1 and len(blocks[2]._forward_hooks) == 1
        assert not blocks[1]._forward_hooks
        assert len(model._forward_pre_hooks) == 1
        raise RuntimeError("boom")
    assert all(not b._forward_hooks for b in blocks)
    assert not model._forward_pre_hooks
    assert not cap.active
    # an error raised inside a hook (bad mask shape) also leaves no hooks behind
    ids, am = tiny_batch([4, 4])
    with pytest.raises(ConfigError, match="mask"), ActivationCapture(model, [1]) as cap:
        cap.set_mask(torch.ones(3, 4, dtype=torch.bool))
        model(input_ids=ids, attention_mask=am)
    assert all(not b._forward_hooks for b in blocks)


def test_one_batch_held_at_a_time() -> None:
    model = make_tiny("gpt2")
    with torch.no_grad(), ActivationCapture(model, [0]) as cap:
        model(input_ids=torch.tensor([[5, 6, 7]]))
        model(input_ids=torch.tensor([[5, 6]]))  # replaces, does not append
        acts = cap.pop()
        assert acts[0].shape == (2, 32)
        with pytest.raises(DifflibError, match="no activations"):
            cap.pop()


class _CheckpointedStack(torch.nn.Module):
    """Blocks run under torch.utils.checkpoint(use_reentrant=True): backward re-calls each block module."""

    def __init__(self) -> None:
        super().__init__()
        self.config = type("Cfg", (), {"num_hidden_layers": 3})()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.utils.checkpoint import checkpoint

        for block in self.layers:
            x = torch.tanh(checkpoint(block, x, use_reentrant=True))
        return x


def test_gradient_checkpointing_reentrant_keeps_first_call() -> None:
    model = _CheckpointedStack().train()
    x = torch.randn(2, 5, 8, requires_grad=True)
    with torch.no_grad():
        expected0 = model.layers[0](x).reshape(10, 8)
    with ActivationCapture(model, [0, 1]) as cap:
        y = model(x)
        assert cap.n_duplicate_calls == 0
        y.sum().backward()  # recomputes blocks 0..2: the hooks of blocks 0 and 1 fire a second time
        assert cap.n_duplicate_calls == 2
        acts = cap.pop()
    torch.testing.assert_close(acts[0], expected0, atol=0, rtol=0)
    assert acts[1].shape == (10, 8)
    assert not acts[0].requires_grad


def test_bf16_model_is_captured_as_float32() -> None:
    model = make_tiny("llama").to(torch.bfloat16)
    ids, am = tiny_batch([5, 3])
    batch = capture_batch(model, ids, am, [0])
    assert batch.acts[0].dtype == torch.float32
    with torch.no_grad():
        hs = model(**forward_inputs(model, ids, am), output_hidden_states=True).hidden_states[1]
    mask = am.bool().clone()
    mask[:, 0] = False  # BOS skipped (right padding: the BOS is column 0)
    torch.testing.assert_close(batch.acts[0], hs[mask].float(), atol=0, rtol=0)


def test_non_finite_names_layer_and_sequence() -> None:
    model = make_tiny("llama")
    ids, am = tiny_batch([4, 5, 6])
    block = get_block(model, 1)

    def poison(module: torch.nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        out = output.clone()
        out[2, 3, 0] = float("nan")
        return out

    handle = block.register_forward_hook(poison)
    try:
        with pytest.raises(NonFiniteActivationError, match=r"NaN.*blocks\.1.*sequence 2"):
            capture_batch(model, ids, am, [0, 1])
    finally:
        handle.remove()
    assert not block._forward_hooks


def test_training_flag_restored_and_bad_inputs() -> None:
    model = make_tiny("gpt2").train()
    ids, am = tiny_batch([3, 4])
    batch = capture_batch(model, ids, am, [0])
    assert model.training
    assert isinstance(batch, CaptureBatch)
    with pytest.raises(ConfigError, match=r"\[0, 2\]"):
        capture_batch(model, ids, am, [3])
    with pytest.raises(ConfigError, match="shape"):
        capture_batch(model, ids, am[:, :2], [0])
    with pytest.raises(ConfigError, match="prompt_lengths"):
        capture_batch(model, ids, am, [0], positions="response")


def test_finite_check_does_not_misfire_on_large_finite_values() -> None:
    from difflib_models.capture.capture import _check_finite

    big = torch.full((4, 8), 3e38)  # the float32 sum overflows to inf, but every value is finite
    _check_finite(big, 0, None)
    big[1, 2] = float("inf")
    with pytest.raises(NonFiniteActivationError, match=r"inf in activations of blocks\.5 at flattened token row 1"):
        _check_finite(big, 5, None)
    mask = torch.tensor([[False, True], [True, True], [False, True]])
    rows = torch.zeros(4, 8)
    rows[2, 0] = float("nan")  # selected row 2 is (batch 1, position 1)
    with pytest.raises(NonFiniteActivationError, match=r"NaN.*sequence 1 of the batch"):
        _check_finite(rows, 0, mask)


def test_no_mask_keeps_every_position_and_copies() -> None:
    model = make_tiny("gpt_neox")
    ids, am = tiny_batch([4, 2])
    with torch.no_grad(), ActivationCapture(model, [1]) as cap:
        cap.set_mask(None)
        out = model(input_ids=ids, attention_mask=am, output_hidden_states=True)
        acts = cap.pop()[1]
    assert acts.shape == (8, 32)
    torch.testing.assert_close(acts, out.hidden_states[2].reshape(8, 32), atol=0, rtol=0)
    assert acts.data_ptr() != out.hidden_states[2].data_ptr()  # an owned copy, not a view of the model output


@pytest.mark.slow
def test_capture_through_torch_compile() -> None:
    model = make_tiny("llama")
    ids, am = tiny_batch([5, 7])
    ref = capture_batch(model, ids, am, [0, 1])
    compiled = torch.compile(model, backend="eager")  # dynamo tracing with hooks, no C compiler needed
    for _ in range(2):  # second call: hooks removed and registered again
        got = capture_batch(compiled, ids, am, [0, 1])
        assert got.n_tokens == ref.n_tokens == 10
        for layer in (0, 1):
            torch.testing.assert_close(got.acts[layer], ref.acts[layer], atol=1e-6, rtol=0)
    assert all(not get_block(model, i)._forward_hooks for i in range(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_capture_on_gpu_returns_cpu_float32() -> None:
    model = make_tiny("llama").cuda().to(torch.bfloat16)
    ids, am = tiny_batch([5, 3], padding_side="left")
    batch = capture_batch(model, ids, am, [0, 2])  # CPU inputs are moved to the model's device
    assert batch.acts[0].device.type == "cpu" and batch.acts[0].dtype == torch.float32
    assert batch.token_ids.device.type == "cpu" and batch.n_tokens == 6
    cpu = capture_batch(make_tiny("llama").to(torch.bfloat16), ids, am, [0, 2])
    torch.testing.assert_close(batch.acts[0], cpu.acts[0], atol=0.05, rtol=0.05)


def test_untuple_block_outputs() -> None:
    from types import SimpleNamespace

    from difflib_models.capture.capture import _untuple

    x = torch.randn(2, 3, 4)
    assert _untuple(x) is x  # transformers 5
    assert _untuple((x, None)) is x  # transformers 4.x
    assert _untuple(SimpleNamespace(last_hidden_state=x)) is x
    with pytest.raises(DifflibError, match="NoneType"):
        _untuple(None)


def test_capture_through_real_ddp_on_cpu(tmp_path: object) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    model = make_tiny("llama")
    ids, am = tiny_batch([5, 7])
    ref = capture_batch(model, ids, am, [0, 2])
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", world_size=1, rank=0)
    try:
        ddp = DistributedDataParallel(model)
        got = capture_batch(ddp, ids, am, [0, 2])
    finally:
        dist.destroy_process_group()
    for layer in (0, 2):
        torch.testing.assert_close(got.acts[layer], ref.acts[layer], atol=0, rtol=0)


@pytest.mark.parametrize("arch", [*ARCHS, "peft-llama"])
def test_early_stop_skips_the_rest_and_leaves_the_model_clean(arch: str) -> None:
    from difflib_models.capture.capture import can_stop_early

    model = _model(arch)
    ids, am = tiny_batch(LENGTHS, padding_side="left")
    with torch.no_grad():
        # (transformers installs its own output-capturing hooks on the first output_hidden_states forward)
        before = model(**forward_inputs(model, ids, am), output_hidden_states=True).logits
    hooks_before = {name: (list(m._forward_hooks), list(m._forward_pre_hooks)) for name, m in model.named_modules()}
    assert can_stop_early(model)
    calls = {"last_block": 0, "final_norm": 0}
    handles = [
        get_block(model, 2).register_forward_hook(lambda *a: calls.__setitem__("last_block", calls["last_block"] + 1)),
        find_final_norm(model).register_forward_hook(lambda *a: calls.__setitem__("final_norm", calls["final_norm"] + 1)),
    ]
    try:
        early = capture_batch(model, ids, am, [0, 1])  # default: stop after blocks.1
        assert calls == {"last_block": 0, "final_norm": 0}  # blocks.2, the final norm and the head never ran
        full = capture_batch(model, ids, am, [0, 1], stop_early=False)
        assert calls == {"last_block": 1, "final_norm": 1}
    finally:
        for handle in handles:
            handle.remove()
    for layer in (0, 1):
        assert torch.equal(early.acts[layer], full.acts[layer])
    assert torch.equal(early.token_ids, full.token_ids) and torch.equal(early.pos_index, full.pos_index)
    with torch.no_grad():  # no hook or state left behind: the next ordinary forward is unchanged
        after = model(**forward_inputs(model, ids, am), output_hidden_states=True)
    torch.testing.assert_close(after.logits, before, atol=0, rtol=0)
    assert len(after.hidden_states) == 4
    hooks_after = {name: (list(m._forward_hooks), list(m._forward_pre_hooks)) for name, m in model.named_modules()}
    assert hooks_after == hooks_before


def test_early_stop_is_off_under_wrappers_that_need_their_post_forward() -> None:
    from accelerate.hooks import ModelHook, add_hook_to_module

    from difflib_models.capture.capture import can_stop_early

    assert not can_stop_early(torch.compile(make_tiny("llama")))
    hooked = make_tiny("llama")
    add_hook_to_module(get_block(hooked, 0), ModelHook())  # what device maps with offloading install
    assert not can_stop_early(hooked)

    class FullyShardedDataParallel(torch.nn.Module):  # FSDP1 wrapper, matched by its class name
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.module = inner

    assert not can_stop_early(FullyShardedDataParallel(make_tiny("llama")))
    assert can_stop_early(make_tiny_lora())


def test_forward_inputs_reads_each_forward_signature_once_and_follows_a_patched_forward() -> None:
    """The position_ids check is cached per forward function: a model whose forward takes no position_ids gets
    none, also after a model of another class that takes them."""
    model = make_tiny("llama")
    ids, am = tiny_batch([3, 2], padding_side="left")
    assert "position_ids" in forward_inputs(model, ids, am)

    class NoPositions(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(1, 1)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, use_cache: bool = False) -> None:
            return None

    plain = NoPositions()
    assert "position_ids" not in forward_inputs(plain, ids, am)
    assert "position_ids" in forward_inputs(model, ids, am)
    plain.forward = lambda input_ids, attention_mask, use_cache=False, position_ids=None: None  # per instance
    assert "position_ids" in forward_inputs(plain, ids, am)
