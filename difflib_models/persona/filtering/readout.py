"""Where the data filter reads a row: one block's unit direction, or a STACKED readout over a span of blocks.

A persona vector is one direction per block. For ranking training rows, a single block can miss a trait that the
model spreads over several blocks: on SmolLM2 and CAA's opinion-matching sycophancy (the answer takes the side of
the opinion the user stated), the best single-block logistic vector ranks held-out answers at AUROC 0.84-0.88,
one logistic regression on the residuals of a span of blocks at 0.91-0.93 (docs/data-filtering.md). A
:class:`Readout` is a unit vector in the stacked residual space of its blocks (the concatenation of the
per-block residuals); a row's projection is the sum of the per-block projections, so the filter's methods
(``raw``, ``proxy``, ``exact``) carry over unchanged.

- :meth:`Readout.single` is today's filter (one block, the vector file's unit direction);
- :func:`fit_stacked` fits one standardised L2 logistic regression on the concatenated response-token means of
  paired answers (trait vs not, same prompt) and maps it back to the raw residual space;
- :func:`spans_around` gives the candidate spans the filter validation tries around a centre block
  (:func:`~difflib_models.persona.filtering.validation.validate_with_readouts` chooses among them on a tuning
  split; nothing here chooses).

A stacked readout is stored in the vector file (``readout.{layer}`` tensors, listed by the ``filter_validation``
record's ``readout_layers``); :func:`readout_of` gives the filter's default readout of a file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from difflib_models.errors import ConfigError, bad_value
from difflib_models.io import sha256_tensor

__all__ = ["MIN_STACKED_PAIRS", "STACKED_C", "Readout", "fit_stacked", "readout_of", "spans_around"]

MIN_STACKED_PAIRS = 100
"""Fewer fitting pairs than this and no stacked readout is fitted: a logistic regression on (blocks x d_model)
features of a few dozen rows only memorises them (the built-in traits have 26 paired responses)."""
STACKED_C = 1.0
"""Inverse L2 strength of the stacked logistic regression on standardised features (0.3-3 gave the same held-out
AUROC within 0.01 on CAA sycophancy; docs/data-filtering.md)."""


@dataclass(frozen=True)
class Readout:
    """A unit vector over one or several blocks: ``weights[layer]`` is its slice for ``blocks.{layer}``; the
    concatenation over ``layers`` has norm 1 (normalised on construction, float32, CPU)."""

    weights: Mapping[int, torch.Tensor]

    def __post_init__(self) -> None:
        if not self.weights:
            raise ConfigError(bad_value("weights", {}, "at least one block's slice"))
        shapes = {tuple(w.shape) for w in self.weights.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise ConfigError(bad_value("weights", {k: tuple(w.shape) for k, w in self.weights.items()},
                                        "1-D slices of one common size d_model"))
        w = {int(k): v.detach().to(torch.float64).cpu() for k, v in sorted(self.weights.items())}
        norm = float(torch.sqrt(sum((v * v).sum() for v in w.values())))
        if not norm > 0.0 or norm != norm:
            raise ConfigError(bad_value("weights", f"norm {norm}", "a non-zero finite vector"))
        object.__setattr__(self, "weights", {k: (v / norm).float().contiguous() for k, v in w.items()})

    @classmethod
    def single(cls, layer: int, unit: torch.Tensor) -> Readout:
        """One block's direction (the filter's classic readout)."""
        return cls({int(layer): unit})

    @property
    def layers(self) -> list[int]:
        return sorted(self.weights)

    @property
    def deepest(self) -> int:
        return max(self.weights)

    @property
    def stacked(self) -> bool:
        return len(self.weights) > 1

    @property
    def d_model(self) -> int:
        return int(next(iter(self.weights.values())).shape[0])

    @property
    def label(self) -> str:
        """``"blocks.15"`` or ``"blocks.9-21 (stacked)"``, for messages."""
        if not self.stacked:
            return f"blocks.{self.layers[0]}"
        lo, hi = self.layers[0], self.layers[-1]
        span = f"{lo}-{hi}" if self.layers == list(range(lo, hi + 1)) else ",".join(map(str, self.layers))
        return f"blocks.{span} (stacked)"

    def to_dict(self) -> dict[str, Any]:
        """The ``readout`` entry of a filter run's ``summary.json``: its blocks and label."""
        return {"layers": self.layers, "label": self.label}

    def matrix(self) -> torch.Tensor:
        """The slices as a ``[len(layers), d]`` float32 matrix, rows in ``layers`` order."""
        return torch.stack([self.weights[k] for k in self.layers])

    def fingerprint(self) -> str:
        """sha256 of the slices and their blocks (a journal key: scores of another readout are never reused)."""
        return sha256_tensor(torch.cat([self.matrix().flatten(), torch.tensor(self.layers, dtype=torch.float32)]))

    def project(self, features: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """Projection of rows given per block (``{layer: [N, d]}``, e.g. response-token means): ``[N]`` float64,
        the sum over this readout's blocks."""
        missing = [k for k in self.layers if k not in features]
        if missing:
            raise ConfigError(bad_value("features", sorted(features), f"features of every block of {self.label}",
                                        f"missing blocks {missing}"))
        return sum((features[k].double() @ self.weights[k].double() for k in self.layers),
                   start=torch.zeros(features[self.layers[0]].shape[0], dtype=torch.float64))


def spans_around(center: int, layers: Sequence[int]) -> list[list[int]]:
    """Candidate spans of consecutive blocks of ``layers`` centred on ``center``: half-widths 1, n/10, n/5 and n/3
    of the n available blocks (cut at the ends, duplicates dropped, single blocks left out)."""
    avail = sorted(set(int(k) for k in layers))
    if center not in avail:
        raise ConfigError(bad_value("center", center, avail))
    n = len(avail)
    pos = avail.index(center)
    out: list[list[int]] = []
    for half in (1, n // 10, n // 5, n // 3):
        span = avail[max(0, pos - half): pos + half + 1]
        if len(span) > 1 and span not in out:
            out.append(span)
    return out


def fit_stacked(matching: Mapping[int, torch.Tensor], other: Mapping[int, torch.Tensor], layers: Sequence[int], *,
                c: float = STACKED_C) -> Readout:
    """One L2 logistic regression (scikit-learn, inverse strength ``c``) on the standardised concatenated features
    of ``layers``: ``matching[layer]`` rows (trait answers) against ``other[layer]`` rows; the normal, mapped back
    to the raw residual space, as a :class:`Readout` pointing toward the trait."""
    from difflib_models.persona.extraction.extractor import logistic_normal

    layers = sorted(int(k) for k in layers)
    if not layers:
        raise ConfigError(bad_value("layers", [], "at least one block"))
    if not c > 0:
        raise ConfigError(bad_value("c", c, "a positive number"))
    x_pos = torch.cat([matching[k].double() for k in layers], dim=-1)
    x_neg = torch.cat([other[k].double() for k in layers], dim=-1)
    if len(x_pos) < 2 or len(x_neg) < 2:
        raise ConfigError(bad_value("matching/other", (len(x_pos), len(x_neg)), "at least 2 rows of each"))
    u = logistic_normal(x_pos, x_neg, c=c, max_iter=3000)
    d = int(matching[layers[0]].shape[-1])
    return Readout({k: u[i * d:(i + 1) * d] for i, k in enumerate(layers)})


def readout_of(vectors: Any, layer: int | None = None) -> Readout:
    """The readout the filter uses for a vector file: ``layer`` given -> that block's unit direction; else the
    file's stacked readout when its filter validation chose one; else the filter-validated block; else the
    selected block (ConfigError when the file names none)."""
    if layer is not None:
        return Readout.single(layer, vectors.unit(layer))
    record = getattr(vectors, "filter_validation", None)
    stacked = getattr(vectors, "readout", None)
    if record is not None and record.readout_layers and stacked:
        return Readout({k: stacked[k] for k in record.readout_layers})
    if record is not None:
        return Readout.single(record.filter_layer, vectors.unit(record.filter_layer))
    if vectors.selected_layer is None:
        raise ConfigError(bad_value("layer", None, vectors.layers, "The vector file selects no layer; pass one."))
    return Readout.single(vectors.selected_layer, vectors.unit(vectors.selected_layer))
