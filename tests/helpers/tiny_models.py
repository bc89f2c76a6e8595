"""Tiny eval-mode causal LMs built from config (hidden 32, 3 layers, small vocab; nothing is downloaded).

Other test modules import these::

    from tests.helpers.tiny_models import ARCHS, make_tiny, make_tiny_lora, save_lora_adapter, tiny_batch

``make_tiny(arch)`` returns a ``transformers`` model in eval mode, float32, with a fixed seed so two calls
give identical weights. ``make_tiny_lora()`` wraps a tiny Llama in a peft LoRA whose B matrices are random
(not zero), so the adapter really changes the activations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

ARCHS: tuple[str, ...] = ("gpt2", "llama", "qwen2", "mistral", "gemma", "gpt_neox", "opt", "falcon")

VOCAB = 128
HIDDEN = 32
LAYERS = 3
HEADS = 4
MAX_POS = 64


def _config(arch: str, overrides: dict[str, Any]) -> Any:
    import transformers as tr

    common: dict[str, Any] = {"vocab_size": VOCAB, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    if arch == "gpt2":
        kw = dict(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=MAX_POS, resid_pdrop=0.0,
                  embd_pdrop=0.0, attn_pdrop=0.0)
        cls = tr.GPT2Config
    elif arch in ("llama", "qwen2", "mistral", "gemma"):
        kw = dict(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  num_key_value_heads=2, max_position_embeddings=MAX_POS)
        if arch == "gemma":
            kw["head_dim"] = HIDDEN // HEADS
        cls = {"llama": tr.LlamaConfig, "qwen2": tr.Qwen2Config, "mistral": tr.MistralConfig,
               "gemma": tr.GemmaConfig}[arch]
    elif arch == "gpt_neox":
        kw = dict(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  max_position_embeddings=MAX_POS, hidden_dropout=0.0, attention_dropout=0.0)
        cls = tr.GPTNeoXConfig
    elif arch == "opt":
        kw = dict(hidden_size=HIDDEN, ffn_dim=64, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  max_position_embeddings=MAX_POS, word_embed_proj_dim=HIDDEN, dropout=0.0,
                  attention_dropout=0.0)
        common["pad_token_id"] = 0
        cls = tr.OPTConfig
    elif arch == "falcon":
        kw = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  hidden_dropout=0.0, attention_dropout=0.0, new_decoder_architecture=False,
                  multi_query=True, parallel_attn=True, alibi=False)
        cls = tr.FalconConfig
    else:
        raise ValueError(f"unknown tiny arch {arch!r}; known: {', '.join(ARCHS)}")
    kw = {**common, **kw, **overrides}
    return cls(**kw)


def make_tiny(arch: str = "llama", *, seed: int = 0, **overrides: Any) -> torch.nn.Module:
    """A tiny randomly initialised causal LM of ``arch`` in eval mode (float32, CPU)."""
    from transformers import AutoModelForCausalLM

    config = _config(arch, overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    return model.float().eval()


def make_tiny_lora(*, seed: int = 0, r: int = 4, target_modules: tuple[str, ...] = ("q_proj", "v_proj", "down_proj"),
                   **overrides: Any) -> torch.nn.Module:
    """A peft ``PeftModel`` (LoRA) on a tiny Llama, with non-zero LoRA B weights so the adapter matters."""
    from peft import LoraConfig, get_peft_model

    base = make_tiny("llama", seed=seed, **overrides)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(target_modules), lora_dropout=0.0)
    model = get_peft_model(base, config)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed + 1)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.2)
    return model.eval()


def save_lora_adapter(base: str | Path, out: Path, *, r: int = 4, std: float = 0.5) -> Path:
    """A peft LoRA adapter directory at ``out`` on the model directory ``base`` (``down_proj`` only, B weights drawn
    from N(0, std) with the global RNG so the adapter matters), its ``base_model_name_or_path`` pointing at ``base``
    so the CLI and ``run_gate`` can find the base without ``--base``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=r, target_modules=["down_proj"], lora_dropout=0.0))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, std)
    peft.save_pretrained(out)
    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "base_model_name_or_path": str(base)}))
    return out


def tiny_batch(
    lengths: list[int], *, padding_side: str = "right", vocab: int = VOCAB, pad_id: int = 0, bos_id: int | None = 1,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``(input_ids, attention_mask)`` with rows of the given real lengths, padded left or right.

    Token ids are drawn from ``[3, vocab)`` so they never collide with pad/bos/eos; when ``bos_id`` is set the
    first real token of each row is BOS."""
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, n in enumerate(lengths):
        toks = torch.randint(3, vocab, (n,), generator=gen)
        if bos_id is not None and n > 0:
            toks[0] = bos_id
        sl = slice(0, n) if padding_side == "right" else slice(width - n, width)
        ids[row, sl] = toks
        mask[row, sl] = 1
    return ids, mask
