"""Snapshot pipeline: tokenize prompts, capture the chosen layers, stream them into an activation store.

:func:`snapshot` is resumable: run it again with the same model, prompts and settings into the same directory and
it skips the prompts already in completed shards. A different model, prompt list, layer set or capture setting
into an existing store is a :class:`~difflib_models.errors.ConfigError`.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from difflib_models.capture.capture import iter_capture
from difflib_models.capture.positions import parse_positions
from difflib_models.errors import ConfigError, NonFiniteActivationError, bad_value
from difflib_models.models.compat import tokenizer_name, vocab_hash
from difflib_models.models.hookpoints import parse_layers
from difflib_models.progress import progress
from difflib_models.store.reader import ActivationStore
from difflib_models.store.writer import ActivationStoreWriter

if TYPE_CHECKING:
    from difflib_models.models.loading import LoadedModel
    from difflib_models.store.reader import ActivationStore

logger = logging.getLogger(__name__)

SIDE = "model"


def texts_sha256(texts: Sequence[str]) -> str:
    """sha256 over the prompt list (length-prefixed, so the split between texts matters)."""
    h = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def resolve_layers(layers: str | int | Sequence[int], n_layers: int) -> list[int]:
    """Layer spec ("0,1", "all", "mid", -1, [0, 2]) -> sorted distinct non-negative block indices."""
    spec: Any = [layers] if isinstance(layers, int) else layers
    return sorted(set(parse_layers(spec, n_layers)))


def snapshot(
    loaded: LoadedModel,
    texts: Sequence[str],
    layers: str | int | Sequence[int],
    out: str | Path,
    *,
    positions: str = "all",
    batch_size: int = 8,
    max_length: int = 128,
    shard_tokens: int = 65536,
    dtype: str = "float32",
    padding_side: str = "right",
    skip_bos: bool = True,
) -> ActivationStore:
    """Capture the residual stream after blocks ``layers`` for every text into the store at ``out``.

    Returns the opened store. Resumes an interrupted run (same arguments, same directory) without duplicating
    prompts; ``batch_size`` and ``shard_tokens`` may change between runs, everything else may not.
    """
    texts = list(texts)
    if not texts:
        raise ConfigError(bad_value("texts", texts, "at least one prompt", "check the prompt file"))
    if any(not isinstance(t, str) for t in texts):
        raise ConfigError(bad_value("texts", "non-string items", "a list of strings"))
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(bad_value("batch_size", batch_size, "an integer >= 1"))
    if not isinstance(max_length, int) or max_length < 1:
        raise ConfigError(bad_value("max_length", max_length, "an integer >= 1"))
    pos = parse_positions(positions)
    layer_list = resolve_layers(layers, loaded.n_layers)
    tok = loaded.tokenizer
    extra = {
        "kind": "snapshot",
        "capture": {
            "positions": str(pos),
            "max_length": max_length,
            "padding_side": padding_side,
            "skip_bos": skip_bos,
        },
        "prompts": {"n": len(texts), "sha256": texts_sha256(texts)},
    }
    writer = ActivationStoreWriter(
        out,
        sides=[SIDE],
        layers=layer_list,
        d_model=loaded.d_model,
        identities={SIDE: loaded.identity.to_dict()},
        tokenizer_name=tokenizer_name(tok),
        vocab_hash=vocab_hash(tok),
        hook_points=loaded.hook_points.to_dict(),
        shard_tokens=shard_tokens,
        dtype=dtype,
        extra=extra,
    )
    with writer:
        done = writer.done_prompt_ids()
        todo = [i for i in range(len(texts)) if i not in done]
        if done:
            logger.info(
                "resuming snapshot into %s: %d of %d prompts already stored", out, len(done), len(texts)
            )
        batches = iter_capture(
            loaded,
            [texts[i] for i in todo],
            layer_list,
            batch_size=batch_size,
            max_length=max_length,
            positions=pos,
            padding_side=padding_side,
            skip_bos=skip_bos,
        )
        total = math.ceil(len(todo) / batch_size)
        n_seen = 0
        try:
            for local_ids, batch in progress(batches, desc="snapshot", total=total, unit="batch"):
                writer.add([todo[i] for i in local_ids], {SIDE: batch})
                n_seen += len(local_ids)
        except NonFiniteActivationError as exc:
            ids = todo[n_seen : n_seen + batch_size]
            raise NonFiniteActivationError(
                f"{exc} [snapshot prompt ids of that batch: {ids[0]}..{ids[-1]}; earlier batches were stored]"
            ) from exc
    store = ActivationStore.open(out)
    logger.info(
        "snapshot %s: %d prompts, %d tokens, %d shards", out, len(texts), store.n_tokens, store.n_shards
    )
    return store
