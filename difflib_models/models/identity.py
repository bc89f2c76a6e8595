"""Weight identity: a stable hash of a model's weights (or of an adapter), recorded with everything derived from it.

The hash covers tensor names, dtypes, shapes and bytes in sorted-name order, so the same weights give the same
hash whatever file format or process they came from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

HASH_PREFIX = "sha256:"


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach()
    if hasattr(t, "full_tensor"):  # a DTensor shard (FSDP2 / tensor parallel): hash the whole tensor; this is a
        t = t.full_tensor()  # collective, so every rank must hash (in the same sorted-name order)
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: hash the raw 16-bit payload
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def state_dict_hash(state: Mapping[str, torch.Tensor], *, exclude: tuple[str, ...] = ()) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor, in sorted-name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        if any(part in name for part in exclude):
            continue
        t = state[name]
        if not isinstance(t, torch.Tensor):
            continue
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(_tensor_bytes(t))
    return HASH_PREFIX + h.hexdigest()


def weight_hash(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """Stable hash of a model's weights. For a peft model, LoRA parameters are excluded (see :func:`adapter_hash`)."""
    if isinstance(model_or_state, nn.Module):
        state = model_or_state.state_dict()
    else:
        state = model_or_state
    # peft keeps the base weight under "...base_layer.weight"; normalise names so a peft-wrapped model hashes like
    # its base model
    normalised: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if is_adapter_tensor(name):
            continue
        key = name.replace(".base_layer.", ".")
        if key.startswith("base_model.model."):
            key = key[len("base_model.model.") :]
        normalised[key] = t
    return state_dict_hash(normalised)


def adapter_hash(model: nn.Module) -> str | None:
    """Hash of the trainable adapter weights of a peft model (None when the model has no adapter)."""
    state = {k: v for k, v in model.state_dict().items() if is_adapter_tensor(k)}
    if not state:
        return None
    return state_dict_hash(state)


_INT_VIEW = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}  # element size -> same-size integer


def is_adapter_tensor(name: str) -> bool:
    """A peft adapter tensor (``lora_*``, ``modules_to_save``): hashed by :func:`adapter_hash`, not :func:`weight_hash`."""
    return "lora_" in name or "modules_to_save" in name


def content_sums(model: nn.Module, *, only: Callable[[str], bool] | None = None) -> dict[str, int] | None:
    """A cheap fingerprint of the weights: per state-dict tensor (``only`` those whose name it accepts), the exact
    sum of its elements' raw bits as 64-bit integers (wrapping), reduced on the tensor's own device.

    Integer sums are exact and do not depend on the reduction order, so the same weights give the same sums on any
    thread count. Any change of a weight, by any route (optimizer steps, ``load_state_dict``, in-place edits through
    ``.data`` that autograd's version counter does not see, adapter merges), changes its tensor's sum unless other
    changes in the same tensor cancel it exactly. SmolLM2-135M on 2 CPU threads: ~0.15 s (a full
    :func:`weight_hash`: ~0.6 s). None when a tensor is sharded (DTensor), on the meta device or cannot be
    reduced there: no fingerprint, nothing is checked."""
    sums: dict[str, int] = {}
    try:
        for name, t in model.state_dict().items():
            if only is not None and not only(name):
                continue
            if not isinstance(t, torch.Tensor) or hasattr(t, "full_tensor") or t.is_meta:
                return None
            t = t.detach()
            view = _INT_VIEW.get(t.element_size())
            if view is None:
                return None
            sums[name] = int(torch.sum(t.view(view), dtype=torch.int64))
    except (RuntimeError, TypeError, NotImplementedError):  # a device or dtype without an int64 sum
        return None
    return sums


@dataclass(frozen=True)
class ModelIdentity:
    """Who a model is: a name, where it came from, and the hash of its weights (and adapter)."""

    name: str
    source: str  # "hf_dir" | "hub" | "gguf" | "peft" | "embedded" | "in_memory"
    path: str | None
    weight_hash: str
    adapter_hash: str | None = None
    base: ModelIdentity | None = None
    revision: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["base"] = self.base.to_dict() if self.base is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelIdentity:
        base = d.get("base")
        return cls(
            name=str(d["name"]),
            source=str(d.get("source", "unknown")),
            path=d.get("path"),
            weight_hash=str(d["weight_hash"]),
            adapter_hash=d.get("adapter_hash"),
            base=cls.from_dict(base) if base else None,
            revision=d.get("revision"),
            extra=dict(d.get("extra") or {}),
        )

    @property
    def combined_hash(self) -> str:
        """One hash for base weights + adapter (what a derived artefact depends on)."""
        if self.adapter_hash is None:
            return self.weight_hash
        h = hashlib.sha256((self.weight_hash + "|" + self.adapter_hash).encode()).hexdigest()
        return HASH_PREFIX + h

    def short(self) -> str:
        tag = self.combined_hash.removeprefix(HASH_PREFIX)[:12]
        return f"{self.name}@{tag}"
