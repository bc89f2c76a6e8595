"""A base model and its fine-tune, checked to be comparable, and run over identical token batches.

Two shapes:

- **adapter**: one peft model; the base side runs inside ``disable_adapter()`` (no second copy in memory), the
  fine-tuned side with the adapter on.
- **two models**: a full fine-tune; the two models run in turn over the same padded batches.

Checks made up front (ConfigError, :func:`difflib_models.models.compat.check_compatible`): same tokenizer
vocabulary (vocab hash), same hidden size, same number of decoder blocks.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from difflib_models.errors import ConfigError, bad_value
from difflib_models.models.batching import pad_batch
from difflib_models.models.compat import check_compatible, model_label
from difflib_models.models.compat import vocab_hash as _vh

SIDES = ("base", "finetuned")


def vocab_hash(tokenizer: Any) -> str:
    return _vh(tokenizer)


@dataclass
class ModelPair:
    """``base`` and ``finetuned`` as LoadedModels; ``finetuned=None`` means ``base`` is a peft model whose adapter
    is the fine-tune (use :meth:`from_adapter`)."""

    base: Any  # LoadedModel
    finetuned: Any | None = None  # LoadedModel

    def __post_init__(self) -> None:
        if self.finetuned is None:
            if not self.base.is_peft:
                raise ConfigError(
                    bad_value(
                        "finetuned",
                        None,
                        "a fine-tuned LoadedModel, or a peft model as `base` (its adapter is the fine-tune)",
                        "pass --finetuned SPEC or --adapter DIR",
                    )
                )
        else:
            self._check_compatible()

    @classmethod
    def from_adapter(cls, peft_loaded: Any) -> ModelPair:
        return cls(base=peft_loaded, finetuned=None)

    # --- properties --------------------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return "adapter" if self.finetuned is None else "two_models"

    @property
    def tokenizer(self) -> Any:
        return self.base.tokenizer

    @property
    def d_model(self) -> int:
        return int(self.base.d_model)

    @property
    def n_layers(self) -> int:
        return int(self.base.n_layers)

    @property
    def hook_override(self) -> str | None:
        return getattr(self.base, "hook_override", None)

    def label(self, side: str) -> str:
        """``side 'model name'`` for messages (the adapter pair's base side says "adapter disabled")."""
        if self.finetuned is not None:
            return model_label(side, self.base if side == "base" else self.finetuned)
        return model_label(side, self.base) + (" (adapter disabled)" if side == "base" else "")

    def identities(self) -> dict[str, dict[str, Any]]:
        """Identity dicts per side (``adapter_hash`` set only on the fine-tuned side of an adapter pair)."""
        if self.finetuned is not None:
            return {"base": self.base.identity.to_dict(), "finetuned": self.finetuned.identity.to_dict()}
        ident = self.base.identity
        base_ident = ident.base if ident.base is not None else dataclasses.replace(ident, adapter_hash=None)
        return {"base": base_ident.to_dict(), "finetuned": ident.to_dict()}

    # --- running -----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def side(self, name: str) -> Iterator[nn.Module]:
        """The module that computes side ``name`` ("base" or "finetuned"), valid inside the context."""
        if name not in SIDES:
            raise ConfigError(bad_value("side", name, SIDES))
        if self.finetuned is not None:
            yield (self.base if name == "base" else self.finetuned).model
        elif name == "base":
            with self.base.base_view() as model:
                yield model
        else:
            yield self.base.model

    def encode(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """Token ids of each text (special tokens as the tokenizer adds them, truncated to ``max_length``)."""
        if max_length < 2:
            raise ConfigError(bad_value("max_length", max_length, "an integer >= 2"))
        ids = self.tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)["input_ids"]
        return [list(x) for x in ids]

    def batches(
        self, texts: Sequence[str], *, batch_size: int, max_length: int, skip: set[int] | None = None
    ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """``(prompt_ids, input_ids, attention_mask)`` right-padded batches of the texts not in ``skip``."""
        if batch_size < 1:
            raise ConfigError(bad_value("batch_size", batch_size, "an integer >= 1"))
        todo = [i for i in range(len(texts)) if not skip or i not in skip]
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        for lo in range(0, len(todo), batch_size):
            pids = todo[lo : lo + batch_size]
            ids = self.encode([texts[i] for i in pids], max_length)
            keep = [(p, x) for p, x in zip(pids, ids, strict=True) if x]
            if not keep:
                continue
            input_ids, attention_mask = pad_batch([x for _, x in keep], pad_token_id=pad_id, padding_side="right")
            yield [p for p, _ in keep], input_ids, attention_mask

    # --- checks ------------------------------------------------------------------------------------------------
    def _check_compatible(self) -> None:
        check_compatible([("base", self.base), ("finetuned", self.finetuned)])
