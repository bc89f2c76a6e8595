"""Test candidates with a planted persona direction: a bias on one decoder block's MLP output.

With ``mlp_bias`` on, ``blocks.L``'s output (the residual after block L) is the base's plus ``alpha * v`` at every
position, so the measured shift along ``v`` is exactly ``alpha`` (v unit) - a number the gate must reproduce.
"""

from __future__ import annotations

from pathlib import Path

import torch

from difflib_models.persona.extraction.vectors import PersonaVectorSet
from tests.helpers.validation import summary


def unit_direction(d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(d, generator=g)
    return v / v.norm()


def planted_model_dir(src: Path, dst: Path, *, layer: int, direction: torch.Tensor, alpha: float) -> Path:
    """Copy the HF model at ``src`` to ``dst`` with ``alpha * direction`` added after decoder block ``layer``."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src)
    config.mlp_bias = True
    model = AutoModelForCausalLM.from_config(config).float()
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.endswith(".bias") for k in missing)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in missing:
                p.zero_()
        model.model.layers[layer].mlp.down_proj.bias.copy_(alpha * direction)
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


def vector_file(path: Path, base_loaded, *, trait: str, layer: int, direction: torch.Tensor, gap: float,
                auroc: float = 0.95, polarity: str = "undesirable") -> Path:
    vs = PersonaVectorSet(trait_id=trait, vectors={layer: 2.0 * direction}, model=base_loaded.identity.to_dict(),
                          mode="planted", polarity=polarity, gap={layer: gap}, selected_layer=layer,
                          validation=summary({layer: auroc}))
    return vs.save(path)


def nan_crosscoder_copy(src: Path, dst: Path) -> Path:
    """A copy of the saved crosscoder at ``src`` whose decoder is all NaN (config and recorded identities kept)."""
    import shutil

    from safetensors.torch import load_file, save_file

    from difflib_models.crosscoder.model import FORMAT

    shutil.copytree(src, dst)
    weights = load_file(str(dst / "crosscoder.safetensors"))
    weights["W_dec"] = torch.full_like(weights["W_dec"], float("nan"))
    save_file(weights, str(dst / "crosscoder.safetensors"), metadata={"format": FORMAT})
    return dst
