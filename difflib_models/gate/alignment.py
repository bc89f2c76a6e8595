"""Crosscoder fine-tune-only latents aligned with a persona direction (the gate metric
``crosscoder.ft_only_aligned``).

For a crosscoder trained on base/fine-tuned activations, latents whose relative decoder norm r exceeds
``ft_only`` (default 0.9) exist only in the fine-tuned model. Their fine-tuned decoder vector at the persona
vector's layer is compared with the unit persona direction; many ft-only latents with a large abs(cosine) mean
the fine-tune created features along the trait direction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from difflib_models.crosscoder.analysis import relative_decoder_norm
from difflib_models.crosscoder.model import Crosscoder
from difflib_models.errors import ConfigError, bad_value
from difflib_models.models.identity import ModelIdentity
from difflib_models.report.alignment_records import AlignmentRow, CrosscoderAlignment

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
                      base: int = 0, ft: int = 1, source_names: list[str] | None = None) -> CrosscoderAlignment:
    """An :class:`AlignmentRow` per trait: the fine-tune-only latents and their cosines with the trait direction
    at the trait's layer, or an ``error`` when the crosscoder does not cover that layer."""
    names = list(source_names or cc.config.source_names)
    if not names:
        raise ConfigError(bad_value("crosscoder", "no source names", "a crosscoder whose sources name their layers"))
    layers = source_layers(names, cc.config.n_layers)
    r = relative_decoder_norm(cc, base=base, ft=ft)
    idx = torch.nonzero(r > ft_only).flatten()
    out: dict[str, AlignmentRow] = {}
    for trait, (layer, unit) in units.items():
        if layer not in layers:
            out[trait] = AlignmentRow.failed(layer, f"crosscoder covers layers {layers}, not {layer}")
            continue
        src = cc.config.sources_of_model(ft)[layers.index(layer)]
        dec = cc.W_dec.detach()[idx, src, :].double()
        cos = torch.nn.functional.cosine_similarity(dec, unit.double()[None, :].expand_as(dec), dim=-1)
        out[trait] = AlignmentRow(layer=layer, ft_only_threshold=ft_only, ft_only_latents=tuple(int(i) for i in idx),
                                  ft_only_cos=tuple(float(c) for c in cos))
    return CrosscoderAlignment(out)


def nonfinite_weights(cc: Any) -> list[str]:
    """``name (count)`` of every crosscoder tensor holding NaN or inf values (empty: all finite)."""
    bad: list[str] = []
    for name, t in cc.state_dict().items():
        if torch.is_floating_point(t):
            n = int((~torch.isfinite(t)).sum())
            if n:
                bad.append(f"{name} ({n} of {t.numel()})")
    return bad


def _same_model(recorded: Any, expected: ModelIdentity) -> bool:
    if not isinstance(recorded, Mapping) or not recorded.get("weight_hash"):
        return False
    return (recorded.get("weight_hash"), recorded.get("adapter_hash")) == \
        (expected.weight_hash, expected.adapter_hash)


def identity_problems(recorded: Any, expected: Mapping[str, ModelIdentity | None], *, base: int = 0,
                      ft: int = 1) -> list[str]:
    """Why a crosscoder's recorded model identities (``crosscoder.json`` ``extra.identities``, one identity dict
    per model in model order) do not show it was trained on ``expected["base"]`` / ``expected["candidate"]``."""
    if not isinstance(recorded, list) or len(recorded) <= max(base, ft):
        return ["crosscoder.json records no identities of the models it was trained on. HINT: retrain it with "
                "`difflib-models crosscoder train` / `diff` from a snapshot store (they record the store's model "
                "identities), so the gate can tell it belongs to this base and candidate"]
    problems = []
    for role, index in (("base", base), ("candidate", ft)):
        want = expected.get(role)
        got = recorded[index]
        if not isinstance(want, ModelIdentity):
            problems.append(f"the gate's {role} model has no identity to compare with the crosscoder's")
        elif not _same_model(got, want):
            name = got.get("name") if isinstance(got, Mapping) else None
            problems.append(
                f"crosscoder was trained on {name!r} (weight_hash {_short(got)}) as model {index}, not on the "
                f"gate's {role} {want.name!r} (weight_hash {_short(want)}). HINT: pass the crosscoder "
                "trained on this base/candidate pair")
    return problems


def _short(ident: Any) -> str:
    if isinstance(ident, ModelIdentity):
        ident = {"weight_hash": ident.weight_hash, "adapter_hash": ident.adapter_hash}
    if not isinstance(ident, Mapping):
        return "none"
    text = str(ident.get("weight_hash") or "none").removeprefix("sha256:")[:12]
    return text + (f"+adapter {str(ident['adapter_hash']).removeprefix('sha256:')[:12]}"
                   if ident.get("adapter_hash") else "")


def crosscoder_alignment(directory: str | Path, units: Mapping[str, tuple[int, torch.Tensor]], *,
                         expected: Mapping[str, ModelIdentity | None] | None = None, **kw: Any
                         ) -> CrosscoderAlignment:
    """Load a saved crosscoder (``Crosscoder.save`` folder) and compute :func:`persona_alignment`.

    A crosscoder is evidence only when its weights are finite and, when ``expected`` (``{"base": ModelIdentity,
    "candidate": ModelIdentity}``) is given, it records being trained on exactly those models; otherwise every
    trait's row carries an ``error`` (the gate check is then ``error``, exit 3)."""
    directory = Path(directory)
    cc = Crosscoder.load(directory)
    meta = directory / "crosscoder.json"
    extra = (json.loads(meta.read_text(encoding="utf-8")).get("extra") or {}) if meta.is_file() else {}
    problems = []
    bad = nonfinite_weights(cc)
    if bad:
        problems.append(f"crosscoder weights are not finite: {', '.join(bad)}; it is no evidence. HINT: retrain it")
    if expected is not None:
        problems += identity_problems(extra.get("identities"), expected, base=kw.get("base", 0), ft=kw.get("ft", 1))
    if problems:
        message = "; ".join(problems)
        return CrosscoderAlignment({trait: AlignmentRow.failed(layer, message) for trait, (layer, _) in units.items()})
    names = list(cc.config.source_names) or list(extra.get("source_names") or [])
    return persona_alignment(cc, units, source_names=names, **kw)
