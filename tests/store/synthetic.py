"""Synthetic CaptureBatch-like data for store tests (no model needed)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class FakeBatch:
    """Same fields as difflib_models.store.batch.CaptureBatch."""

    acts: dict[int, torch.Tensor]
    token_ids: torch.Tensor
    seq_index: torch.Tensor
    pos_index: torch.Tensor


def make_batch(
    prompt_ids: list[int], layers: list[int], d: int, *, seed: int, min_len: int = 2, max_len: int = 9
) -> FakeBatch:
    """One batch: prompt p gets a length and content that depend only on (p, seed)."""
    tok, seq, pos, rows = [], [], [], {i: [] for i in layers}
    for row, p in enumerate(prompt_ids):
        g = torch.Generator().manual_seed(seed * 100_003 + p)
        n = int(torch.randint(min_len, max_len + 1, (1,), generator=g))
        tok.append(torch.randint(0, 500, (n,), generator=g))
        seq.append(torch.full((n,), row, dtype=torch.long))
        pos.append(torch.arange(n))
        for i in layers:
            rows[i].append(torch.randn(n, d, generator=g) * (1.0 + i))
    return FakeBatch(
        acts={i: torch.cat(rows[i]) for i in layers},
        token_ids=torch.cat(tok),
        seq_index=torch.cat(seq),
        pos_index=torch.cat(pos),
    )


def batches_for(n_prompts: int, batch_size: int) -> list[list[int]]:
    ids = list(range(n_prompts))
    return [ids[i : i + batch_size] for i in range(0, n_prompts, batch_size)]


def writer_kwargs(layers: list[int], d: int, sides: tuple[str, ...] = ("model",), **over: object) -> dict:
    kw: dict = {
        "sides": sides,
        "layers": layers,
        "d_model": d,
        "identities": {s: {"name": f"fake-{s}", "weight_hash": f"hash-{s}"} for s in sides},
        "tokenizer_name": "fake-tokenizer",
        "vocab_hash": "v" * 64,
        "hook_points": {"block_path": "model.layers", "n_layers": 4},
    }
    kw.update(over)
    return kw
