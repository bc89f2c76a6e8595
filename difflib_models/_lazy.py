"""Lazy public names for a package: ``__getattr__`` / ``__dir__`` that import a name's module on first use.

Keeps ``import difflib_models`` (and its subpackages) cheap: torch, Lightning and MLflow load only when a name
that needs them is looked up. Each package also lists its names in a static ``__all__`` and imports them under
``if TYPE_CHECKING:``, so IDEs and type checkers resolve them without running this code
(``tests/test_public_api.py`` checks that the three lists agree).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, names: Mapping[str, str], namespace: dict[str, Any], public: Sequence[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package``.

    ``names`` maps a lazy public name to its module: absolute (``difflib_models.x.y``) or relative to ``package``
    (``"config"``). ``public`` is the package's ``__all__`` (every lazy name must be in it). A looked-up value is
    cached in ``namespace`` (the package's ``globals()``).
    """
    missing = sorted(set(names) - set(public))
    if missing:
        raise RuntimeError(f"{package}: lazy names missing from __all__: {missing}")

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
        return sorted(set(public) | {k for k in namespace if not k.startswith("_")})

    return __getattr__, __dir__
