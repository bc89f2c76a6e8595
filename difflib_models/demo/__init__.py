"""The end-to-end demo: fine-tune the embedded model with the callbacks attached, diff it, gate it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from difflib_models._lazy import lazy_exports

if TYPE_CHECKING:
    from difflib_models.demo.config import (
        DemoConfig as DemoConfig,
    )
    from difflib_models.demo.config import (
        DemoProfile as DemoProfile,
    )
    from difflib_models.demo.runner import (
        DemoResult as DemoResult,
    )
    from difflib_models.demo.runner import (
        run_demo as run_demo,
    )

_LAZY: dict[str, str] = {
    "DemoConfig": "config",
    "DemoProfile": "config",
    "DemoResult": "runner",
    "run_demo": "runner",
}

__all__ = [
    "DemoConfig",
    "DemoProfile",
    "DemoResult",
    "run_demo",
]

__getattr__, __dir__ = lazy_exports('difflib_models.demo', _LAZY, globals(), __all__)
