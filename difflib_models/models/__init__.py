"""Models: loading by one spec (:func:`load_model`), weight identity (:class:`ModelIdentity`), decoder-block
resolution (:func:`resolve_blocks`). Submodules import torch; this package's ``__init__`` does not."""

from __future__ import annotations

from typing import TYPE_CHECKING

from difflib_models._lazy import lazy_exports

if TYPE_CHECKING:
    from difflib_models.models.hookpoints import (
        HookPointMap as HookPointMap,
    )
    from difflib_models.models.hookpoints import (
        resolve_blocks as resolve_blocks,
    )
    from difflib_models.models.identity import (
        ModelIdentity as ModelIdentity,
    )
    from difflib_models.models.identity import (
        adapter_hash as adapter_hash,
    )
    from difflib_models.models.identity import (
        weight_hash as weight_hash,
    )
    from difflib_models.models.loading import (
        LoadedModel as LoadedModel,
    )
    from difflib_models.models.loading import (
        apply_adapter as apply_adapter,
    )
    from difflib_models.models.loading import (
        from_pretrained_objects as from_pretrained_objects,
    )
    from difflib_models.models.loading import (
        load_model as load_model,
    )

_LAZY: dict[str, str] = {
    "load_model": "loading",
    "from_pretrained_objects": "loading",
    "apply_adapter": "loading",
    "LoadedModel": "loading",
    "ModelIdentity": "identity",
    "weight_hash": "identity",
    "adapter_hash": "identity",
    "resolve_blocks": "hookpoints",
    "HookPointMap": "hookpoints",
}

__all__ = [
    "load_model",
    "from_pretrained_objects",
    "apply_adapter",
    "LoadedModel",
    "ModelIdentity",
    "weight_hash",
    "adapter_hash",
    "resolve_blocks",
    "HookPointMap",
]

__getattr__, __dir__ = lazy_exports('difflib_models.models', _LAZY, globals(), __all__)
