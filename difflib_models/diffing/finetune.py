"""A small, reusable LoRA fine-tune helper for causal LMs (plain torch loop).

Used by the diffing tests and the documented narrow-fine-tune experiment; the Lightning callbacks have their own
training integration. Inputs are plain texts (loss on every real token) or chat rows
(``{"messages": [...]}``; the chat template is applied and the loss covers the final assistant message only).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from difflib_models.errors import ConfigError, bad_value
from difflib_models.models.chat_masks import assistant_tokens
from difflib_models.progress import progress

log = logging.getLogger(__name__)

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraFinetuneConfig:
    """Settings of :func:`lora_finetune`. Validated on construction."""

    r: int = 8
    """LoRA rank."""
    alpha: float = 16.0
    """LoRA alpha (scaling = alpha / r)."""
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    """Module-name suffixes that get an adapter (only those present in the model are used)."""
    lr: float = 3e-3
    steps: int = 100
    batch_size: int = 8
    max_length: int = 128
    weight_decay: float = 0.0
    warmup_steps: int = 0
    seed: int = 0
    grad_clip: float | None = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("r", "steps", "batch_size", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(bad_value(f"LoraFinetuneConfig.{name}", value, "an integer >= 1"))
        if not self.alpha > 0:
            raise ConfigError(bad_value("LoraFinetuneConfig.alpha", self.alpha, "a number > 0"))
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(bad_value("LoraFinetuneConfig.dropout", self.dropout, "0 <= dropout < 1"))
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(bad_value("LoraFinetuneConfig.lr", self.lr, "a finite number > 0"))
        if self.warmup_steps < 0 or self.warmup_steps >= self.steps:
            raise ConfigError(bad_value("LoraFinetuneConfig.warmup_steps", self.warmup_steps, f"0..{self.steps - 1}"))
        if isinstance(self.target_modules, str) or not self.target_modules:
            raise ConfigError(
                bad_value(
                    "LoraFinetuneConfig.target_modules",
                    self.target_modules,
                    "a non-empty sequence of module-name suffixes",
                    "e.g. ('q_proj', 'v_proj')",
                )
            )
        self.target_modules = tuple(self.target_modules)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FinetuneResult:
    """The trained peft model and its loss curve (one value per step)."""

    model: nn.Module
    losses: list[float]

    @property
    def first_loss(self) -> float:
        return self.losses[0]

    @property
    def last_loss(self) -> float:
        return sum(self.losses[-5:]) / len(self.losses[-5:])


def present_targets(model: nn.Module, wanted: Sequence[str]) -> list[str]:
    leaves = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv1d)}
    present = [t for t in wanted if t in leaves]
    if not present:
        raise ConfigError(
            bad_value(
                "LoraFinetuneConfig.target_modules",
                list(wanted),
                sorted(leaves)[:20],
                "Name linear layers that exist in this model.",
            )
        )
    return present


def warmup_cosine(step: int, warmup: int, total: int, floor: float = 0.1) -> float:
    """Learning-rate factor of the LoRA fine-tunes: linear warm-up ``(step + 1) / (warmup + 1)``, then cosine
    decay from 1 to ``floor`` at ``total`` (held there after it).

    Kept rather than transformers' ``get_cosine_with_min_lr_schedule_with_warmup(min_lr_rate=floor)``: after
    warm-up the factors are the same, but its warm-up is ``step / warmup``, so the first optimiser step runs at
    learning rate 0 (a wasted step), and switching would change every seeded fine-tune the demo, the gate tests
    and the benchmarks measure. This factor equals the transformers one shifted by one step (``warmup + 1``,
    ``total + 1``, ``step + 1``; tests/diffing/test_finetune.py checks it)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def encode_examples(
    tokenizer: Any, examples: Sequence[str | Mapping[str, Any]], max_length: int
) -> list[tuple[list[int], list[int]]]:
    """Token ids and the loss mask (1 on tokens that count in the loss) per example.

    Plain texts: every token but the first. Chat rows (``{"messages": [...]}``, ending with an assistant turn):
    the assistant turns, from :func:`difflib_models.models.chat_masks.assistant_tokens` (transformers'
    ``return_assistant_tokens_mask`` where the template has a ``{% generation %}`` block, prefix rendering
    otherwise). Truncated to ``max_length`` tokens; a row whose assistant text is cut off entirely trains on its
    last token."""
    out: list[tuple[list[int], list[int]]] = []
    for i, ex in enumerate(examples):
        if isinstance(ex, str) or (isinstance(ex, Mapping) and "text" in ex and "messages" not in ex):
            text = ex if isinstance(ex, str) else str(ex["text"])
            ids = list(tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"])
            mask = [0] + [1] * (len(ids) - 1)
        elif isinstance(ex, Mapping) and "messages" in ex:
            messages = list(ex["messages"])
            if not messages or messages[-1].get("role") != "assistant":
                raise ConfigError(
                    bad_value(f"examples[{i}].messages", messages[-1:] if messages else messages,
                              "a conversation ending with an assistant message")
                )
            ids, mask = assistant_tokens(tokenizer, messages)
            ids, mask = ids[:max_length], mask[:max_length]
            if ids and not any(mask[1:]):
                mask[-1] = 1
        else:
            raise ConfigError(bad_value(f"examples[{i}]", ex, "a string, {'text': ...} or {'messages': [...]}"))
        if len(ids) >= 2:
            out.append((ids, [0] + mask[1:]))  # token 0 has nothing before it to predict it from
    if not out:
        raise ConfigError(bad_value("examples", f"{len(examples)} examples", "at least one example of >= 2 tokens"))
    return out


def collate_examples(batch: list[tuple[list[int], list[int]]], pad_id: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 where the loss mask is 0)."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, (ids, mask) in enumerate(batch):
        n = len(ids)
        t = torch.tensor(ids)
        input_ids[row, :n] = t
        attn[row, :n] = 1
        labels[row, :n] = torch.where(torch.tensor(mask, dtype=torch.bool), t, torch.full_like(t, -100))
    return input_ids, attn, labels


def lora_finetune(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[str | Mapping[str, Any]],
    config: LoraFinetuneConfig | None = None,
    *,
    adapter_name: str = "default",
) -> FinetuneResult:
    """Wrap ``model`` with a fresh LoRA adapter and train it on ``examples`` (returns the peft model).

    The base weights stay frozen and unchanged, so ``model.disable_adapter()`` gives the exact base model back.
    Batches are sampled with replacement-free epochs from a seeded shuffle; AdamW with linear warm-up and cosine
    decay. Runs on the model's device.
    """
    from peft import LoraConfig, get_peft_model

    cfg = config or LoraFinetuneConfig()
    targets = present_targets(model, cfg.target_modules)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    data = encode_examples(tokenizer, examples, cfg.max_length)

    torch.manual_seed(cfg.seed)
    lora_cfg = LoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets, bias="none",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora_cfg, adapter_name=adapter_name)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: warmup_cosine(step, cfg.warmup_steps, cfg.steps))
    device = next(peft_model.parameters()).device
    rng = random.Random(cfg.seed)
    order: list[int] = []
    losses: list[float] = []
    peft_model.train()
    for _step in progress(range(cfg.steps), desc="lora finetune", total=cfg.steps, unit="step"):
        if len(order) < cfg.batch_size:
            more = list(range(len(data)))
            rng.shuffle(more)
            order.extend(more)
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        input_ids, attn, labels = (t.to(device) for t in collate_examples([data[i] for i in idx], pad_id))
        out = peft_model(input_ids=input_ids, attention_mask=attn, labels=labels)
        loss = out.loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {_step}; lower LoraFinetuneConfig.lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    peft_model.eval()
    log.info("LoRA fine-tune: %d steps, loss %.3f -> %.3f", cfg.steps, losses[0], losses[-1])
    return FinetuneResult(model=peft_model, losses=losses)
