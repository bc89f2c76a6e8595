"""Lazy public names for a package: ``__getattr__`` / ``__dir__`` that import a name's module on first use.

Keeps ``import difflib_models`` (and its subpackages) cheap: torch, Lightning and MLflow load only when a name
that needs them is looked up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, names: Mapping[str, str], namespace: dict[str, Any], extra: tuple[str, ...] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Return ``(__getattr__, __dir__, __all__)`` for ``package``.

    ``names`` maps a public name to its module: absolute (``difflib_models.x.y``) or relative to ``package``
    (``"config"``). A looked-up value is cached in ``namespace`` (the package's ``globals()``).
    """
    public = [*extra, *names]

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if not module.startswith("difflib_models"):
            module = f"{package}.{module}"
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(public)

    return __getattr__, __dir__, public
