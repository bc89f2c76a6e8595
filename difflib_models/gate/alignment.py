"""Crosscoder fine-tune-only latents aligned with a persona direction (the gate metric
``crosscoder.ft_only_aligned``).

For a crosscoder trained on base/fine-tuned activations, latents whose relative decoder norm r exceeds
``ft_only`` (default 0.9) exist only in the fine-tuned model. Their fine-tuned decoder vector at the persona
vector's layer is compared with the unit persona direction; many ft-only latents with a large abs(cosine) mean
the fine-tune created features along the trait direction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from difflib_models.errors import ConfigError, bad_value

_LAYER_RE = re.compile(r"blocks\.(\d+)$")


def source_layers(names: list[str], n_layers: int) -> list[int]:
    """Model block index of each of the crosscoder's per-model layers, from names like ``finetuned/blocks.3``."""
    layers: list[int] = []
    for name in names[:n_layers]:
        m = _LAYER_RE.search(str(name))
        if m is None:
            raise ConfigError(bad_value("source_names", names, "names ending in blocks.<i>",
                                        "train the crosscoder with difflib-models so its sources are named"))
        layers.append(int(m.group(1)))
    return layers


def persona_alignment(cc: Any, units: Mapping[str, tuple[int, torch.Tensor]], *, ft_only: float = 0.9,
                      base: int = 0, ft: int = 1, source_names: list[str] | None = None) -> dict[str, Any]:
    """``{trait: {layer, ft_only_latents, ft_only_cos}}`` for every trait whose layer the crosscoder covers."""
    from difflib_models.crosscoder.analysis import relative_decoder_norm

    names = list(source_names or cc.config.source_names)
    if not names:
        raise ConfigError(bad_value("crosscoder", "no source names", "a crosscoder whose sources name their layers"))
    layers = source_layers(names, cc.config.n_layers)
    r = relative_decoder_norm(cc, base=base, ft=ft)
    idx = torch.nonzero(r > ft_only).flatten()
    out: dict[str, Any] = {}
    for trait, (layer, unit) in units.items():
        if layer not in layers:
            out[trait] = {"layer": layer, "error": f"crosscoder covers layers {layers}, not {layer}"}
            continue
        src = cc.config.sources_of_model(ft)[layers.index(layer)]
        dec = cc.W_dec.detach()[idx, src, :].double()
        cos = torch.nn.functional.cosine_similarity(dec, unit.double()[None, :].expand_as(dec), dim=-1)
        out[trait] = {"layer": layer, "ft_only_threshold": ft_only, "ft_only_latents": [int(i) for i in idx],
                      "ft_only_cos": [float(c) for c in cos]}
    return out


def crosscoder_alignment(directory: str | Path, units: Mapping[str, tuple[int, torch.Tensor]], **kw: Any
                         ) -> dict[str, Any]:
    """Load a saved crosscoder (``Crosscoder.save`` folder) and compute :func:`persona_alignment`."""
    import json

    from difflib_models.crosscoder.model import Crosscoder

    directory = Path(directory)
    cc = Crosscoder.load(directory)
    names = list(cc.config.source_names)
    meta = directory / "crosscoder.json"
    if not names and meta.is_file():
        names = list((json.loads(meta.read_text()).get("extra") or {}).get("source_names") or [])
    return persona_alignment(cc, units, source_names=names, **kw)
