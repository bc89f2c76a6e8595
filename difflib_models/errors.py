"""Exception hierarchy. Every error the library raises on purpose subclasses :class:`DifflibError`.

Messages follow one shape: the argument, the value, what is allowed, and a HINT. Use :func:`bad_value`
to build them so they stay uniform.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable
from typing import Any


class DifflibError(Exception):
    """Base class of all difflib_models errors."""


class ConfigError(DifflibError, ValueError):
    """Bad user input: an argument, a file or a configuration that cannot be used as given."""


class ModelLoadError(DifflibError):
    """A model, tokenizer or adapter could not be loaded."""


class HookPointError(ConfigError):
    """The decoder blocks of a model could not be resolved, or a layer index is out of range."""


class StoreError(DifflibError):
    """An activation store is unreadable, corrupt, incomplete or incompatible."""


class CorruptStoreError(StoreError):
    """A shard's checksum or shape does not match the manifest."""


class StoreLockedError(ConfigError):
    """Another writer (named by its pid) holds the lock of an activation store."""


class IncompatibleStoreError(StoreError):
    """A store written by an incompatible format version, or for a different model/tokenizer."""


class NonFiniteActivationError(DifflibError):
    """NaN or inf in captured activations; nothing was written."""


class IdentityMismatchError(ConfigError):
    """An artefact (vector file, store, checkpoint) belongs to a different model or configuration."""


class GateError(DifflibError):
    """A release-gate check could not be evaluated (fail-closed: an error is never a pass)."""


def _fmt(value: Any) -> str:
    """repr of ``value`` in at most 200 characters, built without a full repr of a huge or deep container
    (a YAML alias bomb as a value would otherwise take seconds and hundreds of MB to print)."""
    if isinstance(value, (str, bytes)):
        text = repr(value[:201])
    elif isinstance(value, (list, tuple, dict, set, frozenset)):
        text = _SHORT.repr(value)
    else:
        text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _short_repr() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel, r.maxother, r.maxstring, r.maxlong = 4, 200, 200, 200
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 24
    return r


_SHORT = _short_repr()


def bad_value(
    argument: str,
    value: Any,
    allowed: str | Iterable[Any] | None = None,
    hint: str | None = None,
) -> str:
    """Build an error message: ``argument=value`` is invalid, what is allowed, and a HINT."""
    msg = f"`{argument}={_fmt(value)}` is invalid."
    if allowed is not None:
        if not isinstance(allowed, str):
            allowed = ", ".join(_fmt(a) for a in allowed)
        msg += f" Allowed: {allowed}."
    if hint:
        msg += f" HINT: {hint}"
    return msg
