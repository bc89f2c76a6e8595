"""A LoRA fine-tune of a causal LM as a LightningModule, with a data module over chat or text rows.

The loss covers the final assistant message of chat rows (the chat template is applied) or every token of plain
texts. The base weights stay frozen, so the adapter can be diffed against ``disable_adapter()``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from difflib_models.diffing.finetune import (
    DEFAULT_TARGETS,
    collate_examples,
    encode_examples,
    present_targets,
    warmup_cosine,
)
from difflib_models.errors import ConfigError, bad_value


class EncodedRows(Dataset):
    """Token ids + loss start index per row (map-style, so samplers and filters can wrap it)."""

    def __init__(self, tokenizer: Any, rows: Sequence[str | Mapping[str, Any]], max_length: int) -> None:
        self.items = encode_examples(tokenizer, rows, max_length)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return self.items[i]


class ChatDataModule(L.LightningDataModule):
    """Shuffled batches ``{input_ids, attention_mask, labels}`` (labels -100 outside the loss span)."""

    def __init__(
        self,
        tokenizer: Any,
        rows: Sequence[str | Mapping[str, Any]],
        *,
        batch_size: int = 4,
        max_length: int = 128,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(bad_value("batch_size", batch_size, "an integer >= 1"))
        if not rows:
            raise ConfigError(bad_value("rows", rows, "at least one training row"))
        self.tokenizer = tokenizer
        self.dataset = EncodedRows(tokenizer, rows, max_length)
        self.batch_size = batch_size
        self.seed = seed
        pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self.pad_id = int(pid)

    def collate(self, batch: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        input_ids, attn, labels = collate_examples(batch, self.pad_id)
        return {"input_ids": input_ids, "attention_mask": attn, "labels": labels}

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True, generator=g,
                          collate_fn=self.collate)


def add_lora(model: nn.Module, *, r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
             target_modules: Sequence[str] = DEFAULT_TARGETS, seed: int = 0) -> nn.Module:
    """Wrap ``model`` with a fresh LoRA adapter on the target modules that exist in it."""
    from peft import LoraConfig, get_peft_model

    targets = present_targets(model, target_modules)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none",
                         task_type="CAUSAL_LM")
        return get_peft_model(model, cfg)


class LoRAFineTune(L.LightningModule):
    """Causal-LM LoRA fine-tune: AdamW, linear warm-up then cosine decay to 10% over ``max_steps``."""

    def __init__(self, model: nn.Module, tokenizer: Any = None, *, lr: float = 2e-3, warmup_steps: int = 2,
                 max_steps: int = 100, weight_decay: float = 0.0) -> None:
        super().__init__()
        if not hasattr(model, "peft_config"):
            raise ConfigError(bad_value("model", type(model).__name__, "a peft model",
                                        "wrap it first: add_lora(model)"))
        if not (lr > 0 and math.isfinite(lr)):
            raise ConfigError(bad_value("lr", lr, "a finite number > 0"))
        self.model = model
        self.tokenizer = tokenizer
        self.lr = lr
        self.warmup_steps = warmup_steps
        self.max_steps = max_steps
        self.weight_decay = weight_decay

    def forward(self, **batch: torch.Tensor) -> Any:
        return self.model(**batch)

    def on_fit_start(self) -> None:
        # load_model() returns eval-mode models; Lightning keeps module modes as given, so switch to train mode
        self.model.train()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         labels=batch["labels"])
        self.log("train_loss", out.loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return out.loss

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        warm, total = self.warmup_steps, max(1, self.max_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: warmup_cosine(step, warm, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
