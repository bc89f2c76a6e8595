"""Hook points: canonical names for decoder blocks and how to find them in any causal LM.

Convention (the only place it is converted): ``blocks.{i}`` is the residual stream *after* decoder block ``i``,
0-indexed. HF ``output_hidden_states`` has ``n_layers + 1`` entries; ``hidden_states[i + 1]`` equals the output
of block ``i`` for every block except the last, where HF stores the output *after the final norm*
(:func:`hidden_states_index`, :func:`find_final_norm`).

Resolution order (:func:`find_block_list`):

1. unwrap the model (:func:`unwrap_model`: peft ``PeftModel.get_base_model()``, torch.compile ``_orig_mod``,
   DDP/DataParallel ``.module``, FSDP ``_fsdp_wrapped_module``, activation-checkpoint
   ``_checkpoint_wrapped_module``);
2. an explicit user override (a dotted path to the ``nn.ModuleList`` of blocks, relative to the unwrapped model);
3. a table of known suffixes (``model.layers``, ``transformer.h``, ``gpt_neox.layers``, ``model.decoder.layers``,
   ...) matched with ``endswith``;
4. the one ``nn.ModuleList`` whose length equals ``config.num_hidden_layers``.

Otherwise :class:`~difflib_models.errors.HookPointError` lists the candidate ``ModuleList`` paths and how to
override. Paths in a :class:`HookPointMap` are relative to ``unwrap_model(model)``.
"""

from __future__ import annotations

import logging
import operator
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from difflib_models.errors import HookPointError, bad_value
from difflib_models.models.convention import LAYER_CONVENTION

logger = logging.getLogger(__name__)


# Known block-list paths, most specific first; matched by ``path == s or path.endswith("." + s)``.
KNOWN_BLOCK_SUFFIXES: tuple[str, ...] = (
    "model.decoder.layers",  # OPT
    "gpt_neox.layers",  # GPT-NeoX / Pythia
    "model.language_model.layers",  # multimodal wrappers (Gemma 3, Llava-style)
    "model.layers",  # Llama, Mistral, Qwen2/3, Gemma, Phi-3, SmolLM
    "transformer.h",  # GPT-2, Falcon, GPT-J, Bloom
    "transformer.blocks",  # MPT
    "transformer.layers",
    "backbone.layers",
    "decoder.layers",
    "layers",  # bare backbones (LlamaModel, GPTNeoXModel)
    "h",  # bare GPT2Model / FalconModel
)

# Final norm applied by HF before storing hidden_states[-1].
KNOWN_FINAL_NORMS: tuple[str, ...] = (
    "model.decoder.final_layer_norm",
    "gpt_neox.final_layer_norm",
    "model.language_model.norm",
    "model.norm",
    "transformer.ln_f",
    "transformer.norm_f",
    "backbone.norm_f",
    "decoder.final_layer_norm",
    "final_layer_norm",
    "norm",
    "ln_f",
)

_OVERRIDE_HINT = (
    "pass the dotted path of the nn.ModuleList of decoder blocks explicitly, e.g. "
    "`load_model(..., hook_override='model.layers')` or `ActivationCapture(model, layers, "
    "hook_override='model.layers')`; the path is relative to the unwrapped model (after peft / torch.compile / "
    "DDP / FSDP wrappers)."
)


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip training/adaptation wrappers and return the underlying transformers model.

    Handles (repeatedly, in any nesting): peft ``PeftModel`` (``get_base_model()``; note that
    ``PeftModel.base_model`` is the LoRA wrapper, not the backbone), torch.compile ``_orig_mod``,
    ``DistributedDataParallel``/``DataParallel`` ``.module``, FSDP ``_fsdp_wrapped_module`` and
    activation-checkpoint ``_checkpoint_wrapped_module``. Hooks registered on sub-modules of the result fire
    when the wrapper is called."""
    seen: set[int] = set()
    while id(model) not in seen:
        seen.add(id(model))
        inner = _unwrap_once(model)
        if inner is None:
            break
        model = inner
    return model


def _unwrap_once(model: nn.Module) -> nn.Module | None:
    if hasattr(model, "get_base_model") and hasattr(model, "peft_config"):
        return model.get_base_model()
    for attr in ("_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module):
            return inner
    # DDP / DataParallel (and look-alikes): a wrapper whose only child is `.module`
    inner = model._modules.get("module") if hasattr(model, "_modules") else None
    if isinstance(inner, nn.Module):
        names = [n for n in model._modules if model._modules[n] is not None]
        if names == ["module"] or type(model).__name__ in ("DistributedDataParallel", "DataParallel"):
            return inner
    return None


def config_n_layers(model: nn.Module) -> int | None:
    """``num_hidden_layers`` from the (text) config of ``model`` (unwrapped), or None when unknown."""
    config = getattr(unwrap_model(model), "config", None)
    if config is None:
        return None
    for cfg in (config, _text_config(config)):
        n = getattr(cfg, "num_hidden_layers", None)
        if isinstance(n, int) and n > 0:
            return n
    return None


def _text_config(config: Any) -> Any:
    getter = getattr(config, "get_text_config", None)
    if callable(getter):
        try:
            return getter()
        except Exception:  # pragma: no cover - exotic configs
            return None
    return getattr(config, "text_config", None)


def _module_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    return [(name, mod) for name, mod in model.named_modules() if isinstance(mod, nn.ModuleList) and len(mod) > 0]


def _candidates_text(lists: list[tuple[str, nn.ModuleList]]) -> str:
    if not lists:
        return "none (the model has no non-empty nn.ModuleList)"
    return ", ".join(f"{name!r} (len {len(mod)})" for name, mod in lists[:20])


# automatic resolutions per unwrapped model: resolving walks every module, and readers resolve once per forward
_RESOLVED: weakref.WeakKeyDictionary[nn.Module, tuple[str, nn.ModuleList]] = weakref.WeakKeyDictionary()


def find_block_list(model: nn.Module, override: str | None = None) -> tuple[str, nn.ModuleList]:
    """Return ``(path, module_list)`` of the decoder blocks of ``model`` (path relative to the unwrapped model).

    The automatic resolution is remembered per unwrapped model and reused while that path still holds the same
    ModuleList with the configured number of blocks (a replaced block list is resolved again)."""
    root = unwrap_model(model)
    n_cfg = config_n_layers(root)
    if override is not None:
        return _resolve_override(root, override)
    cached = _RESOLVED.get(root)
    if cached is not None and _still_resolves(root, cached, n_cfg):
        return cached
    found = _find_block_list(root, n_cfg)
    _RESOLVED[root] = found
    return found


def _still_resolves(root: nn.Module, cached: tuple[str, nn.ModuleList], n_cfg: int | None) -> bool:
    path, blocks = cached
    try:
        current = root.get_submodule(path)
    except AttributeError:
        return False
    return current is blocks and len(blocks) > 0 and (n_cfg is None or len(blocks) == n_cfg)


def _find_block_list(root: nn.Module, n_cfg: int | None) -> tuple[str, nn.ModuleList]:
    lists = _module_lists(root)
    by_name = dict(lists)
    for suffix in KNOWN_BLOCK_SUFFIXES:
        hits = sorted((p for p in by_name if p == suffix or p.endswith("." + suffix)), key=len)
        hits = [p for p in hits if n_cfg is None or len(by_name[p]) == n_cfg]
        if hits:
            logger.debug("block list resolved by known suffix %r: %s", suffix, hits[0])
            return hits[0], by_name[hits[0]]
    if n_cfg is not None:
        same = [(p, m) for p, m in lists if len(m) == n_cfg]
        if len(same) == 1:
            logger.debug("block list resolved by length %d: %s", n_cfg, same[0][0])
            return same[0]
    raise HookPointError(
        f"Could not find the decoder blocks of {type(root).__name__} "
        f"(config.num_hidden_layers={n_cfg}). Candidate nn.ModuleList paths: {_candidates_text(lists)}. "
        f"HINT: {_OVERRIDE_HINT}"
    )


def _resolve_override(root: nn.Module, override: str) -> tuple[str, nn.ModuleList]:
    lists = _module_lists(root)
    path = override.strip()
    try:
        module = root.get_submodule(path) if path else root
    except AttributeError:
        module = None
    if not isinstance(module, nn.ModuleList | nn.Sequential) or len(module) == 0:
        what = "does not exist" if module is None else f"is a {type(module).__name__}, not an nn.ModuleList"
        raise HookPointError(
            bad_value(
                "hook_override",
                override,
                f"a dotted path to a non-empty nn.ModuleList of {type(root).__name__}; "
                f"candidates: {_candidates_text(lists)}",
                f"the path {what}. {_OVERRIDE_HINT}",
            )
        )
    return path, module  # type: ignore[return-value]


@dataclass(frozen=True)
class HookPointMap:
    """Where the decoder blocks live: ``block_path`` (relative to the unwrapped model) and their number."""

    block_path: str
    n_layers: int

    def module_path(self, i: int) -> str:
        """Dotted path (relative to the unwrapped model) of decoder block ``i`` (negative indices allowed)."""
        (i,) = check_layers([i], self.n_layers, argument="layer")
        return f"{self.block_path}.{i}" if self.block_path else str(i)

    def name(self, i: int) -> str:
        """Canonical hook-point name ``blocks.{i}`` (non-negative index)."""
        (i,) = check_layers([i], self.n_layers, argument="layer")
        return f"blocks.{i}"

    def to_dict(self) -> dict[str, Any]:
        return {"block_path": self.block_path, "n_layers": self.n_layers, "layer_convention": LAYER_CONVENTION}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HookPointMap:
        return cls(block_path=str(data["block_path"]), n_layers=int(data["n_layers"]))


def resolve_blocks(model: nn.Module, override: str | None = None) -> HookPointMap:
    """Resolve the decoder blocks of ``model`` into a :class:`HookPointMap`."""
    path, blocks = find_block_list(model, override)
    return HookPointMap(block_path=path, n_layers=len(blocks))


def get_block(model: nn.Module, i: int, override: str | None = None) -> nn.Module:
    """Decoder block ``i`` of ``model`` (negative indices count from the end)."""
    _, blocks = find_block_list(model, override)
    (i,) = check_layers([i], len(blocks), argument="layer")
    return blocks[i]


def find_final_norm(model: nn.Module) -> nn.Module | None:
    """The final norm HF applies before storing ``hidden_states[-1]`` (None when not found).

    ``final_norm(blocks.{n-1}) == hidden_states[-1]`` for the architectures in :data:`KNOWN_FINAL_NORMS`."""
    root = unwrap_model(model)
    modules = dict(root.named_modules())
    for suffix in KNOWN_FINAL_NORMS:
        hits = sorted((p for p in modules if p == suffix or p.endswith("." + suffix)), key=len)
        if hits:
            return modules[hits[0]]
    return None


def hidden_states_index(i: int) -> int:
    """Index into HF ``output_hidden_states`` that corresponds to ``blocks.{i}`` (i >= 0): ``i + 1``.

    For the last block HF stores the output after the final norm, so only non-last blocks are equal."""
    if i < 0:
        raise HookPointError(
            bad_value("layer", i, "a non-negative block index", "normalise with check_layers() first")
        )
    return i + 1


def check_layers(layers: Sequence[int] | int, n_layers: int, argument: str = "layers") -> list[int]:
    """Validate block indices against ``n_layers``; negative indices count from the end.

    Returns non-negative indices in the given order without duplicates; raises HookPointError (a ConfigError)
    naming the valid range."""
    if isinstance(layers, int):
        layers = [layers]
    allowed = f"integers in [0, {n_layers - 1}] (or [-{n_layers}, -1] from the end); the model has {n_layers} blocks"
    out: list[int] = []
    if len(layers) == 0:
        raise HookPointError(bad_value(argument, list(layers), allowed, "pick at least one layer"))
    for layer in layers:
        try:
            if isinstance(layer, bool | float):
                raise TypeError
            layer = operator.index(layer)  # int, numpy / torch integer scalars
        except TypeError:
            raise HookPointError(bad_value(argument, layer, allowed)) from None
        if not -n_layers <= layer < n_layers:
            raise HookPointError(
                bad_value(argument, layer, allowed, f"blocks are 0-indexed: the last one is {n_layers - 1}")
            )
        layer = layer % n_layers
        if layer not in out:
            out.append(layer)
    return out


_RANGE = re.compile(r"^(\d+)-(\d+)$")


def parse_layers(spec: str | int | Sequence[int], n_layers: int) -> list[int]:
    """Parse a layer spec: ``"3"``, ``"0,2,5"``, ``"-1"``, ``"2-4"`` (inclusive), ``"all"``, ``"mid"``
    (block ``n_layers // 2``), or a sequence of ints. Returns validated non-negative indices."""
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "all":
            return list(range(n_layers))
        items: list[int] = []
        for part in (p.strip() for p in text.split(",")):
            if part == "mid":
                items.append(n_layers // 2)
            elif part == "all":
                items.extend(range(n_layers))
            elif (m := _RANGE.match(part)) is not None:
                lo, hi = int(m.group(1)), int(m.group(2))
                if lo > hi:
                    raise HookPointError(bad_value("layers", spec, "ranges written low-high, e.g. '2-4'"))
                check_layers([lo, hi], n_layers)
                items.extend(range(lo, hi + 1))
            else:
                try:
                    items.append(int(part))
                except ValueError:
                    raise HookPointError(
                        bad_value(
                            "layers",
                            spec,
                            f"'all', 'mid', an index, a comma list ('0,2,5') or a range ('2-4') within "
                            f"[0, {n_layers - 1}] (negative from the end)",
                        )
                    ) from None
        return check_layers(items, n_layers)
    return check_layers(spec, n_layers)
