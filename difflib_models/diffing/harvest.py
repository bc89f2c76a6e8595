"""Paired harvesting: the same token sequences through the base and the fine-tuned model into one store.

The store has sides ``["base", "finetuned"]``; for every batch both sides see the identical padded
``input_ids`` (tokenized once), so token ids, sequence and position indices line up row for row. BOS and padding
are skipped (``capture_batch(skip_bos=True)``); the store keeps per side/layer normalisation scalars. Running again
into the same directory resumes: prompts already in completed shards are skipped, and a store written for other
models, layers or texts is refused (ConfigError from the writer).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from difflib_models.capture.capture import capture_batch
from difflib_models.diffing.pair import SIDES, ModelPair
from difflib_models.errors import ConfigError, NonFiniteActivationError, StoreError, bad_value
from difflib_models.models.compat import tokenizer_name, vocab_hash
from difflib_models.models.hookpoints import LAYER_CONVENTION, parse_layers
from difflib_models.progress import progress
from difflib_models.store.reader import ActivationStore
from difflib_models.store.writer import ActivationStoreWriter

log = logging.getLogger(__name__)


def texts_hash(texts: Sequence[str]) -> str:
    """sha256 of the text list (recorded in the store so a resume with other texts is refused)."""
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=True).encode("utf-8")).hexdigest()


def harvest_paired(
    pair: ModelPair,
    texts: Sequence[str],
    layers: Sequence[int] | str | int,
    out: str | Path,
    *,
    batch_size: int = 8,
    max_length: int = 128,
    positions: str = "all",
    shard_tokens: int = 65536,
    dtype: str = "float32",
) -> Any:
    """Capture ``layers`` of both sides of ``pair`` on ``texts`` into a paired store at ``out``; returns the
    opened :class:`~difflib_models.store.reader.ActivationStore` (alignment checked).

    ``layers`` accepts what :func:`~difflib_models.models.hookpoints.parse_layers` accepts ("mid", "0,2", -1).
    """
    texts = [str(t) for t in texts]
    if not texts:
        raise ConfigError(bad_value("texts", texts, "at least one text"))
    layer_list = parse_layers(layers if not isinstance(layers, int) else [layers], pair.n_layers)
    hook_points = pair.base.hook_points.to_dict()
    tok = pair.tokenizer
    bos = tok.bos_token_id
    writer = ActivationStoreWriter(
        out,
        sides=list(SIDES),
        layers=layer_list,
        d_model=pair.d_model,
        identities=pair.identities(),
        tokenizer_name=tokenizer_name(tok),
        vocab_hash=_vocab_hash(tok),
        hook_points=hook_points,
        shard_tokens=shard_tokens,
        dtype=dtype,
        extra={
            "kind": "paired",
            "pair_mode": pair.mode,
            "texts_sha256": texts_hash(texts),
            "n_texts": len(texts),
            "positions": str(positions),
            "max_length": int(max_length),
            "layer_convention": LAYER_CONVENTION,
        },
    )
    with writer:
        done = writer.done_prompt_ids()
        if done:
            log.info("resuming paired harvest into %s: %d of %d texts already stored", out, len(done), len(texts))
        todo = len(texts) - len(done & set(range(len(texts))))
        batches = pair.batches(texts, batch_size=batch_size, max_length=max_length, skip=done)
        for prompt_ids, input_ids, attention_mask in progress(
            batches, desc="harvest base+finetuned", total=math.ceil(todo / batch_size), unit="batch"
        ):
            captured = {}
            for side in SIDES:
                with pair.side(side) as model:
                    try:
                        captured[side] = capture_batch(
                            model, input_ids, attention_mask, layer_list, positions=positions, skip_bos=True,
                            hook_override=pair.hook_override, bos_token_id=bos,
                        )
                    except NonFiniteActivationError as exc:  # name the model it came from
                        raise NonFiniteActivationError(f"{pair.label(side)}: {exc}") from exc
            _check_same_tokens(captured, prompt_ids)
            writer.add(prompt_ids, captured)
    store = ActivationStore.open(out)
    store.check_alignment()
    return store


def _vocab_hash(tokenizer: Any) -> str:
    return vocab_hash(tokenizer)


def _check_same_tokens(captured: dict[str, Any], prompt_ids: list[int]) -> None:
    a, b = captured["base"], captured["finetuned"]
    if a.token_ids.shape != b.token_ids.shape or not torch.equal(a.token_ids, b.token_ids):
        raise StoreError(
            f"paired capture selected different tokens for base and fine-tuned on prompts {prompt_ids[0]}.."
            f"{prompt_ids[-1]} ({a.n_tokens} vs {b.n_tokens}). HINT: both sides must use the same BOS/padding "
            "conventions; report this as a bug."
        )


def paired_acts(store: Any, layer: int, *, batch_size: int = 8192) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """All base and fine-tuned activations of ``layer`` from a paired store (``[N, d]`` each, store order) and
    the index tensors. Meant for stores that fit in memory (baselines on modest text sets)."""
    if list(store.sides) != list(SIDES):
        raise ConfigError(bad_value("store.sides", store.sides, [list(SIDES)], "harvest a paired store first"))
    base, ft, idx = [], [], {k: [] for k in ("token_ids", "seq_index", "pos_index", "prompt_id")}
    for batch in store.iter_batches(batch_size, layers=[layer]):
        base.append(batch["acts"][:, 0, 0])
        ft.append(batch["acts"][:, 1, 0])
        for k in idx:
            idx[k].append(batch[k])
    if not base:
        raise StoreError(f"store {getattr(store, 'path', '?')} holds no tokens")
    return torch.cat(base), torch.cat(ft), {k: torch.cat(v) for k, v in idx.items()}
