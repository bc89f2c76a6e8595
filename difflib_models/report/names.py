"""Short human names for model identities in renderings (the full path stays in the identity's ``path``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["display_name"]


_CACHE_SUFFIX = re.compile(r"-[0-9a-f]{16}$")  # the GGUF conversion cache's "-<weight hash prefix>" folder suffix
_QUANT_SUFFIX = re.compile(r"^(?P<stem>.+?)[.-](?P<quant>(?:I?Q\d[A-Za-z0-9_]*|F16|F32|BF16))$", re.I)


def _short(name: str) -> str:
    """The last path component of a path-like name, without the cache hash, ``.gguf`` and with the quantisation in
    parentheses; a hub id (``org/model``) stays as it is."""
    text = name.strip().rstrip("/\\")
    looks_like_path = text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1
    if looks_like_path:
        text = re.split(r"[/\\]", text)[-1] or text
    text = _CACHE_SUFFIX.sub("", text)
    text = re.sub(r"\.gguf$", "", text, flags=re.I)
    m = _QUANT_SUFFIX.match(text)
    return f"{m['stem']} ({m['quant']})" if m else text


def display_name(identity: Mapping[str, Any] | None) -> str:
    """A short, human name for a model identity: the model's directory name or hub id rather than a cache path
    (``SmolLM2-135M-Instruct (Q4_1)`` for ``/root/.cache/.../gguf/SmolLM2-135M-Instruct.Q4_1-b179c9523d0e6a0f``);
    an adapter reads ``<base> + <adapter folder>``. The full path stays in ``path``."""
    if not identity:
        return "—"
    if identity.get("display_name"):
        return str(identity["display_name"])
    base = identity.get("base")
    path = identity.get("path")
    if identity.get("source") == "peft" and isinstance(base, Mapping):
        adapter = _short(str(path)) if path else str(identity.get("name", "")).rsplit("+", 1)[-1]
        return f"{display_name(base)} + {_short(adapter)}"
    name = str(identity.get("name") or path or "model")
    short = _short(name)
    return short or name
