"""Are two or more loaded models comparable? One check used by ``diff`` (base vs fine-tune) and ``gate`` (base,
candidate and control), run right after loading and before any compute.

Comparable means: the same tokenizer vocabulary (size and a hash of the sorted (token, id) pairs: token ids must
line up), the same hidden size (directions and activations live in one space) and the same number of decoder
blocks (layer indices mean the same depth). A mismatch is a :class:`~difflib_models.errors.ConfigError` (exit 2)
naming both models and the property.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from difflib_models.errors import ConfigError, bad_value

__all__ = ["check_compatible", "model_label", "tokenizer_name", "vocab_hash"]


def vocab_hash(tokenizer: Any) -> str:
    """sha256 over the tokenizer's sorted (token, id) vocabulary: equal hashes mean the same token ids (activation
    stores record it)."""
    vocab = tokenizer.get_vocab()
    payload = json.dumps(sorted(vocab.items(), key=lambda kv: (kv[1], kv[0])), ensure_ascii=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def tokenizer_name(tokenizer: Any) -> str:
    """The tokenizer's ``name_or_path``, else its class name."""
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def model_label(role: str, loaded: Any) -> str:
    """``role 'name'`` for messages, e.g. ``candidate '/models/ft'``."""
    ident = getattr(loaded, "identity", None)
    name = getattr(ident, "name", None) or getattr(getattr(loaded, "tokenizer", None), "name_or_path", "") or "?"
    return f"{role} {str(name)!r}"


def _properties(loaded: Any) -> dict[str, Any]:
    tok = loaded.tokenizer
    return {"vocab": (len(tok), vocab_hash(tok)), "hidden size": int(loaded.d_model),
            "number of decoder blocks": int(loaded.n_layers)}


def check_compatible(models: Sequence[tuple[str, Any]], *, hint: str | None = None) -> None:
    """Raise ConfigError unless every ``(role, LoadedModel)`` in ``models`` matches the first one in tokenizer
    vocabulary, hidden size and number of decoder blocks. ``hint`` replaces the default HINT of the message."""
    if len(models) < 2:
        return
    (ref_role, ref), rest = models[0], models[1:]
    want = _properties(ref)
    for role, other in rest:
        if other is ref:
            continue
        have = _properties(other)
        ref_label, label = model_label(ref_role, ref), model_label(role, other)
        for prop, key in (("vocab", "tokenizer"), ("hidden size", "hidden_size"),
                          ("number of decoder blocks", "n_layers")):
            if have[prop] == want[prop]:
                continue
            if prop == "vocab":
                (n_a, h_a), (n_b, h_b) = want[prop], have[prop]
                value = f"{tokenizer_name(other.tokenizer)} ({n_b} tokens, vocab hash {h_b[:12]})"
                allowed = f"the tokenizer of {ref_label}: {tokenizer_name(ref.tokenizer)} ({n_a} tokens, vocab hash {h_a[:12]})"
                why = "token ids would not line up"
            else:
                value, allowed = have[prop], f"{want[prop]} (the {prop} of {ref_label})"
                why = "a fine-tune keeps the architecture of its base"
            raise ConfigError(bad_value(
                f"{role}.{key}", value, allowed,
                f"{label} and {ref_label} are not comparable ({prop} differs; {why}). "
                + (hint or "Compare a model with the checkpoint it was fine-tuned from."),
            ))
