"""Namespace-free plumbing shared by the Lightning callbacks.

``import pytorch_lightning`` and ``import lightning.pytorch`` are two copies of the same code with distinct classes,
so the callback logic is written once in plain classes (``*Core``) that only duck-type the trainer, and each
namespace has its ordinary subclasses (:mod:`.lightning`, :mod:`.pytorch_lightning`). Nothing here imports Lightning
at module import time.

Distributed rules followed by every callback:

* collectives (``broadcast``, ``barrier``, ``reduce_boolean_decision``) run on every rank, never under a rank guard;
* side effects (files, artifacts) run on global rank 0 only;
* probe forwards run on every rank (FSDP needs all ranks to gather the sharded parameters).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from difflib_models.errors import ConfigError, bad_value
from difflib_models.hooks import probe_mode as _probe_mode
from difflib_models.integrations.loggers import artifact_loggers as _artifact_loggers
from difflib_models.models.loading import LoadedModel, ensure_pad_token, from_pretrained_objects

log = logging.getLogger(__name__)

NAMESPACES = ("lightning.pytorch", "pytorch_lightning")
RUN_SUBDIR = "difflib_models"


def lightning_module(namespace: str) -> Any:
    """Import ``lightning.pytorch`` or ``pytorch_lightning`` (lazily; costs a few seconds the first time)."""
    if namespace not in NAMESPACES:
        raise ConfigError(bad_value("namespace", namespace, NAMESPACES))
    return importlib.import_module(namespace)



def generate_state_key(obj: Any, **kwargs: Any) -> str:
    """Same format as Lightning's ``Callback._generate_state_key``: class name + identity-defining arguments."""
    return f"{type(obj).__qualname__}{kwargs!r}"


# ----------------------------------------------------------------------------------------------- validation helpers
def check_positive_int(argument: str, value: Any, *, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(bad_value(argument, value, "a positive integer" + (" or None" if allow_none else "")))
    return int(value)


def check_number(argument: str, value: Any, *, lo: float | None = None, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (lo is not None and value < lo):
        allowed = "a number" + (f" >= {lo}" if lo is not None else "") + (" or None" if allow_none else "")
        raise ConfigError(bad_value(argument, value, allowed))
    return float(value)


def as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | Path):
        return [str(value)]
    return [str(v) for v in value]


# ------------------------------------------------------------------------------------------------ model discovery
def find_hf_model(pl_module: nn.Module, model_attr: str | None) -> nn.Module:
    """The transformers (or peft) model inside a LightningModule: ``model_attr`` if given, else ``.model``, else the
    LightningModule itself when it has a ``config``."""
    if model_attr:
        obj: Any = pl_module
        for part in model_attr.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise ConfigError(
                    bad_value("model_attr", model_attr, hint=f"{type(pl_module).__name__} has no attribute path "
                              f"{model_attr!r}; name the attribute that holds the transformers/peft model.")
                )
        if not isinstance(obj, nn.Module):
            raise ConfigError(bad_value("model_attr", model_attr, hint="the attribute is not an nn.Module"))
        return obj
    candidate = getattr(pl_module, "model", None)
    if isinstance(candidate, nn.Module):
        return candidate
    if getattr(pl_module, "config", None) is not None:
        return pl_module
    raise ConfigError(
        bad_value("model_attr", model_attr, hint=f"{type(pl_module).__name__} has no `.model` attribute holding a "
                  "transformers model; pass `model_attr='<attribute>'` naming it.")
    )


def find_tokenizer(pl_module: nn.Module, tokenizer: str | None) -> Any:
    """A tokenizer from a path/hub id, else the LightningModule's ``.tokenizer`` attribute."""
    if tokenizer:
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(tokenizer)
        except Exception as exc:  # noqa: BLE001 - reported as a config error with the cause
            raise ConfigError(bad_value("tokenizer", tokenizer, hint=f"could not load it: {exc}")) from exc
    tok = getattr(pl_module, "tokenizer", None)
    if tok is None:
        raise ConfigError(
            bad_value("tokenizer", tokenizer, hint=f"{type(pl_module).__name__} has no `.tokenizer` attribute; pass "
                      "`tokenizer='<path or hub id>'` to the callback.")
        )
    return tok


def loaded_view(model: nn.Module, tokenizer: Any, *, name: str | None = None, hook_override: str | None = None,
                identity: Any = None) -> Any:
    """Wrap the training model in a LoadedModel without copying it. ``identity`` skips re-hashing the weights."""
    if identity is not None:
        ensure_pad_token(tokenizer)
        return LoadedModel(model=model, tokenizer=tokenizer, identity=identity, hook_override=hook_override)
    return from_pretrained_objects(model, tokenizer, name=name, hook_override=hook_override)


def probe_mode(module: nn.Module) -> contextlib.AbstractContextManager[None]:
    """Eval mode and no grad for a probe forward, each submodule's training flag restored afterwards
    (:func:`difflib_models.hooks.probe_mode`)."""
    return _probe_mode(module)


# ----------------------------------------------------------------------------------------------- trainer helpers
def is_global_zero(trainer: Any) -> bool:
    return bool(getattr(trainer, "is_global_zero", True))


def world_size(trainer: Any) -> int:
    return int(getattr(trainer, "world_size", 1) or 1)


def barrier(trainer: Any, name: str) -> None:
    """Barrier on every rank (a no-op single-process)."""
    if world_size(trainer) > 1:
        trainer.strategy.barrier(name)


def broadcast(trainer: Any, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (collective: call it on all ranks)."""
    if world_size(trainer) > 1:
        return trainer.strategy.broadcast(obj, src=0)
    return obj


def reduce_any(trainer: Any, flag: bool) -> bool:
    """True on every rank when ``flag`` is True on any rank (collective)."""
    if world_size(trainer) > 1:
        return bool(trainer.strategy.reduce_boolean_decision(bool(flag), all=False))
    return bool(flag)


def run_dir(trainer: Any, out_dir: str | Path | None, name: str) -> Path:
    """``out_dir`` if given, else ``<trainer.default_root_dir>/difflib_models/<name>``."""
    if out_dir is not None:
        return Path(out_dir)
    root = Path(getattr(trainer, "default_root_dir", None) or ".")
    return root / RUN_SUBDIR / name


def artifact_loggers(trainer: Any) -> list[Any]:
    """The trainer's loggers that can store files: MLflow, W&B, TensorBoard or any with a ``log_dir``
    (:func:`difflib_models.integrations.loggers.artifact_loggers`)."""
    return _artifact_loggers(trainer)
