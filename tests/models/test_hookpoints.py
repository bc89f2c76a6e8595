"""Hook-point resolution, layer parsing and the hidden_states convention."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from difflib_models.errors import ConfigError, HookPointError
from difflib_models.models.hookpoints import (
    LAYER_CONVENTION,
    HookPointMap,
    check_layers,
    find_block_list,
    find_final_norm,
    get_block,
    hidden_states_index,
    parse_layers,
    resolve_blocks,
    unwrap_model,
)
from tests.helpers.tiny_models import ARCHS, make_tiny, make_tiny_lora

EXPECTED_PATHS = {
    "gpt2": "transformer.h",
    "llama": "model.layers",
    "qwen2": "model.layers",
    "mistral": "model.layers",
    "gemma": "model.layers",
    "gpt_neox": "gpt_neox.layers",
    "opt": "model.decoder.layers",
    "falcon": "transformer.h",
}


@pytest.mark.parametrize("arch", ARCHS)
def test_known_architectures_resolve(arch: str) -> None:
    model = make_tiny(arch)
    hp = resolve_blocks(model)
    assert hp == HookPointMap(EXPECTED_PATHS[arch], 3)
    assert hp.module_path(-1) == f"{EXPECTED_PATHS[arch]}.2"
    assert hp.name(-1) == "blocks.2"
    assert get_block(model, 1) is model.get_submodule(f"{EXPECTED_PATHS[arch]}.1")
    assert hp.to_dict()["layer_convention"] == LAYER_CONVENTION
    assert HookPointMap.from_dict(hp.to_dict()) == hp


def test_peft_unwraps_to_backbone_not_lora_wrapper() -> None:
    peft_model = make_tiny_lora()
    inner = unwrap_model(peft_model)
    # PeftModel.base_model is the LoraModel wrapper; we must reach the transformers model
    assert type(inner).__name__ == "LlamaForCausalLM"
    assert inner is not peft_model.base_model
    path, blocks = find_block_list(peft_model)
    assert path == "model.layers"
    assert blocks is peft_model.get_base_model().model.layers


class _DDPLike(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


class _FSDPLike(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self._fsdp_wrapped_module = module


class _CkptLike(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self._checkpoint_wrapped_module = module


def test_wrappers_are_unwrapped() -> None:
    model = make_tiny("gpt2")
    compiled = torch.compile(model)  # OptimizedModule; not run, so no compilation cost
    assert unwrap_model(compiled) is model
    nested = _DDPLike(_FSDPLike(_CkptLike(compiled)))
    assert unwrap_model(nested) is model
    assert resolve_blocks(nested) == HookPointMap("transformer.h", 3)
    assert get_block(nested, 0) is model.transformer.h[0]


def test_real_ddp_wrapper_is_unwrapped() -> None:
    # DistributedDataParallel needs a process group; DataParallel on CPU is a plain `.module` wrapper
    model = make_tiny("llama")
    assert unwrap_model(nn.DataParallel(model)) is model


def test_final_norm_found() -> None:
    model = make_tiny("llama")
    assert find_final_norm(model) is model.model.norm
    model = make_tiny("opt")
    assert find_final_norm(model) is model.model.decoder.final_layer_norm
    model = make_tiny("gpt_neox")
    assert find_final_norm(model) is model.gpt_neox.final_layer_norm
    lora = make_tiny_lora()
    assert find_final_norm(lora) is lora.get_base_model().model.norm


class _Odd(nn.Module):
    """A model whose blocks sit at an unknown path, next to another ModuleList of the same length."""

    def __init__(self, n: int = 3) -> None:
        super().__init__()
        self.config = type("Cfg", (), {"num_hidden_layers": n})()
        self.stack = nn.ModuleList([nn.Linear(4, 4) for _ in range(n)])
        self.heads = nn.ModuleList([nn.Linear(4, 4) for _ in range(n)])
        self.other = nn.ModuleList([nn.Linear(4, 4) for _ in range(n + 2)])


def test_fallback_single_modulelist_of_config_length() -> None:
    model = _Odd()
    del model.heads
    assert find_block_list(model)[0] == "stack"


def test_ambiguous_model_lists_candidates_and_hint() -> None:
    with pytest.raises(HookPointError) as info:
        find_block_list(_Odd())
    msg = str(info.value)
    assert "'stack' (len 3)" in msg and "'heads' (len 3)" in msg and "'other' (len 5)" in msg
    assert "hook_override" in msg
    assert isinstance(info.value, ConfigError)


def test_override() -> None:
    model = _Odd()
    assert resolve_blocks(model, override="heads") == HookPointMap("heads", 3)
    assert resolve_blocks(model, override="other").n_layers == 5
    with pytest.raises(HookPointError, match="does not exist"):
        resolve_blocks(model, override="nope.layers")
    with pytest.raises(HookPointError, match="not an nn.ModuleList"):
        resolve_blocks(model, override="stack.0")
    # override is relative to the unwrapped model, also through peft
    assert resolve_blocks(make_tiny_lora(), override="model.layers").n_layers == 3


def test_check_layers_names_range() -> None:
    assert check_layers([0, -1, 2, 0], 3) == [0, 2]
    with pytest.raises(ConfigError, match=r"\[0, 11\].*12 blocks"):
        check_layers([12], 12)
    with pytest.raises(ConfigError, match=r"\[0, 2\]"):
        check_layers([-4], 3, argument="layer")
    with pytest.raises(ConfigError):
        check_layers([1.0], 3)  # type: ignore[list-item]
    with pytest.raises(ConfigError):
        check_layers([], 3)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("3", [3]), ("0,2,5", [0, 2, 5]), ("all", [0, 1, 2, 3, 4, 5]), ("mid", [3]), ("-1", [5]), ("1-3", [1, 2, 3]),
     ("0, -1", [0, 5]), ([1, -2], [1, 4])],
)
def test_parse_layers(spec: str, expected: list[int]) -> None:
    assert parse_layers(spec, 6) == expected


@pytest.mark.parametrize("spec", ["6", "x", "3-1", "0-9", ""])
def test_parse_layers_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"\[0, 5\]|low-high|invalid"):
        parse_layers(spec, 6)


def test_hidden_states_index() -> None:
    assert [hidden_states_index(i) for i in range(3)] == [1, 2, 3]
    with pytest.raises(ConfigError):
        hidden_states_index(-1)


def test_block_list_is_remembered_and_resolved_again_when_replaced() -> None:
    """The automatic resolution is reused for the same model (also through a peft wrapper) and redone when the
    block list is replaced or shortened with the config."""
    model = make_tiny("llama")
    path, blocks = find_block_list(model)
    assert (path, blocks) == find_block_list(model) and find_block_list(model)[1] is blocks
    lora = make_tiny_lora()
    assert find_block_list(lora)[1] is lora.get_base_model().model.layers
    model.model.layers = nn.ModuleList(list(blocks)[:2])
    model.config.num_hidden_layers = 2
    path2, blocks2 = find_block_list(model)
    assert path2 == path and blocks2 is model.model.layers and len(blocks2) == 2
    del model.model.layers[1]  # shortened in place, config not updated: no longer the configured block list
    with pytest.raises(HookPointError):
        find_block_list(model)
