"""LoRAFineTune + ChatDataModule: a real Lightning LoRA fine-tune lowers the loss and leaves the base intact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.models.loading import load_model


def test_lora_finetune_lowers_loss_and_keeps_base(tinystories_656k: Path, tmp_path: Path) -> None:
    import lightning.pytorch as L

    from difflib_models.training.lora_module import ChatDataModule, LoRAFineTune, add_lora

    loaded = load_model(tinystories_656k)
    ids = torch.tensor([[1, 45, 300, 12, 99, 7, 88, 19]])
    with torch.no_grad():
        before = loaded.model(ids).logits.clone()
    rows = ["Once upon a time there was a red dragon who loved apples."] * 8
    dm = ChatDataModule(loaded.tokenizer, rows, batch_size=4, max_length=32)
    model = add_lora(loaded.model, r=4)
    module = LoRAFineTune(model, loaded.tokenizer, lr=5e-3, max_steps=12)
    batch = dm.collate([dm.dataset[0], dm.dataset[1]])
    assert batch["labels"][0, 0].item() == -100  # BOS is never a target
    with torch.no_grad():
        loss0 = model(**batch).loss.item()
    trainer = L.Trainer(max_steps=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)
    model.eval()
    with torch.no_grad():
        loss1 = model(**batch).loss.item()
        with model.disable_adapter():
            base_after = model(ids).logits
    assert loss1 < loss0 - 0.5
    assert torch.allclose(base_after, before, atol=1e-6)


def test_lora_module_needs_peft_model(tinystories_656k: Path) -> None:
    from difflib_models.training.lora_module import LoRAFineTune

    loaded = load_model(tinystories_656k)
    with pytest.raises(ConfigError, match="peft"):
        LoRAFineTune(loaded.model)
