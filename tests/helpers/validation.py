"""Typed validation summaries for tests that need a vector file validated at given layers."""

from __future__ import annotations

from difflib_models.persona.contracts import LayerValidation, ValidationSummary


def summary(aurocs: dict[int, float], selected: int | None = None, *, level: str = "quick",
            mode: str = "planted") -> ValidationSummary:
    """A summary holding these held-out AUROCs per layer (no nulls), selecting ``selected`` (default: the best)."""
    best = max(aurocs, key=lambda k: aurocs[k])
    rows = tuple(LayerValidation(layer=k, auroc=v, auroc_ci=(v - 0.05, min(1.0, v + 0.05)), cohens_d=1.0,
                                 alignment=0.5) for k, v in sorted(aurocs.items()))
    return ValidationSummary(level=level, mode=mode, model_name="m", model_weight_hash=None,
                             selected_layer=best if selected is None else selected, best_auroc_layer=best,
                             selection_reason="test", verdict="real", n_eval_pos=8, n_eval_neg=8, layers=rows,
                             nulls=())
