"""Lightning training pieces used by the demo and examples: a LoRA chat fine-tune module and its data module.

Importing :mod:`difflib_models.training.lora_module` imports Lightning; this package's ``__init__`` does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from difflib_models._lazy import lazy_exports

if TYPE_CHECKING:
    from difflib_models.training.lora_module import (
        ChatDataModule as ChatDataModule,
    )
    from difflib_models.training.lora_module import (
        LoRAFineTune as LoRAFineTune,
    )
    from difflib_models.training.lora_module import (
        add_lora as add_lora,
    )

_LAZY: dict[str, str] = {
    "LoRAFineTune": "lora_module",
    "ChatDataModule": "lora_module",
    "add_lora": "lora_module",
}

__all__ = [
    "LoRAFineTune",
    "ChatDataModule",
    "add_lora",
]

__getattr__, __dir__ = lazy_exports('difflib_models.training', _LAZY, globals(), __all__)
