"""Tiny LightningModules for the callback tests (importable by ddp_spawn children and by LightningCLI).

A 3-block Llama with hidden size 32 built from config, with the TinyStories-656K tokenizer (vocab 2048) so the
callbacks can tokenize their probe prompts; trained on fixed random token sequences with SGD."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

SHARED = Path(os.environ.get("DIFFLIB_MODELS_SHARED", Path(__file__).resolve().parents[3] / "shared"))
TOKENIZER_DIR = str(SHARED / "models" / "tinystories-656k")
VOCAB = 2048


def tiny_llama(seed: int = 0, lora: bool = False, dropout: float = 0.0) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      attention_dropout=dropout, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 lora_dropout=0.1))
    return model


def token_data(n: int = 24, length: int = 12, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randint(3, VOCAB, (n, length), generator=g))


def _dict_collate(rows: list) -> dict[str, torch.Tensor]:
    """input_ids + labels with the first half of every row masked (-100): a prompt/response split."""
    ids = torch.stack([r[0] for r in rows])
    labels = ids.clone()
    labels[:, : ids.shape[1] // 2] = -100
    return {"input_ids": ids, "labels": labels}


def _module_class(namespace: str) -> type:
    L = importlib.import_module(namespace)

    class TinyLM(L.LightningModule):
        """Causal-LM fine-tune of a tiny Llama on random tokens."""

        def __init__(self, tokenizer_dir: str = TOKENIZER_DIR, lr: float = 0.05, lora: bool = False,
                     n_samples: int = 24, batch_size: int = 2, seed: int = 0, dict_batches: bool = False) -> None:
            super().__init__()
            from transformers import AutoTokenizer

            self.model = tiny_llama(seed=seed, lora=lora)
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
            self.lr = lr
            self.n_samples = n_samples
            self.batch_size = batch_size
            self.seed = seed
            self.dict_batches = dict_batches

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if isinstance(batch, dict):
                loss = self.model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
            else:
                ids = batch[0]
                loss = self.model(input_ids=ids, labels=ids).loss
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=self.lr)

        def train_dataloader(self) -> DataLoader:
            collate = _dict_collate if self.dict_batches else None
            return DataLoader(token_data(self.n_samples, seed=self.seed), batch_size=self.batch_size,
                              collate_fn=collate)

    TinyLM.__module__ = __name__
    TinyLM.__qualname__ = TinyLM.__name__ = "TinyLM" if namespace == "lightning.pytorch" else "PLTinyLM"
    return TinyLM


TinyLM = _module_class("lightning.pytorch")
PLTinyLM = _module_class("pytorch_lightning")


def _recorder_class() -> type:
    import lightning.pytorch as L

    class MetricRecorder(L.Callback):
        """Writes, per rank, the metrics whose names start with ``prefix`` after every batch (ddp tests)."""

        def __init__(self, out_dir: str, prefix: str = "persona/") -> None:
            self.out_dir = out_dir
            self.prefix = prefix
            self.rows: list[dict[str, float]] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            row = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(self.prefix)}
            row["step"] = trainer.global_step
            self.rows.append(row)

        def on_train_end(self, trainer, pl_module) -> None:
            import json

            Path(self.out_dir).mkdir(parents=True, exist_ok=True)
            path = Path(self.out_dir) / f"rank{trainer.global_rank}.json"
            path.write_text(json.dumps({"world_size": trainer.world_size, "rows": self.rows}))

    MetricRecorder.__module__ = __name__
    MetricRecorder.__qualname__ = "MetricRecorder"
    return MetricRecorder


MetricRecorder = _recorder_class()


def _chat_module_class() -> type:
    import lightning.pytorch as L

    from difflib_models.callbacks.data_filter import FilterableDataset

    class ChatLM(L.LightningModule):
        """Tiny Llama fine-tuned on chat rows held in a FilterableDataset (``self.train_dataset``)."""

        def __init__(self, rows: list | None = None, tokenizer_dir: str = TOKENIZER_DIR, lr: float = 0.05,
                     batch_size: int = 4, length: int = 24, dataset: str = "sycophancy-inducing",
                     n_rows: int = 12) -> None:
            super().__init__()
            from transformers import AutoTokenizer

            self.model = tiny_llama(seed=0)
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
            self.lr, self.batch_size, self.length = lr, batch_size, length
            if rows is None:
                from difflib_models.datasets import load_dataset

                rows = load_dataset(dataset)[:n_rows]
            self.train_dataset = FilterableDataset(rows, transform=self._encode)
            self.batches_per_epoch: dict[int, int] = {}

        def _encode(self, row: dict) -> torch.Tensor:
            text = " ".join(m["content"] for m in row["messages"])
            ids = self.tokenizer(text, truncation=True, max_length=self.length)["input_ids"]
            return torch.tensor(ids + [2] * (self.length - len(ids)))

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            e = self.current_epoch
            self.batches_per_epoch[e] = self.batches_per_epoch.get(e, 0) + 1
            return self.model(input_ids=batch, labels=batch).loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.lr)

        def train_dataloader(self) -> DataLoader:
            return DataLoader(self.train_dataset, batch_size=self.batch_size)

    ChatLM.__module__ = __name__
    ChatLM.__qualname__ = "ChatLM"
    return ChatLM


ChatLM = _chat_module_class()


def _kept_recorder_class() -> type:
    import lightning.pytorch as L

    class KeptRecorder(L.Callback):
        """Writes, per rank, the rows the module's FilterableDataset keeps when training starts (ddp tests)."""

        def __init__(self, out_dir: str) -> None:
            self.out_dir = out_dir

        def on_train_start(self, trainer, pl_module) -> None:
            import json

            Path(self.out_dir).mkdir(parents=True, exist_ok=True)
            path = Path(self.out_dir) / f"rank{trainer.global_rank}.json"
            path.write_text(json.dumps({"world_size": trainer.world_size,
                                        "kept": list(pl_module.train_dataset.kept_indices)}))

    KeptRecorder.__module__ = __name__
    KeptRecorder.__qualname__ = "KeptRecorder"
    return KeptRecorder


KeptRecorder = _kept_recorder_class()
