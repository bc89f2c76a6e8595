"""Mode and layer chosen on a tuning split, held-out AUROC on the evaluation split (imported traits).

For a trait with a ``tuning`` split (statement files from Anthropic's model-written evals,
:func:`~difflib_models.persona.traits.importers.trait_from_statements`):

1. every available mode (``paired``, ``ab``, ``prompt_contrast``) is fitted on the EXTRACTION split;
2. each mode's directions are scored on the TUNING split with one yardstick, the *stance contrast*: the
   trait-consistent vs the trait-inconsistent answer to the same statement (balanced Yes/No, so a Yes-only
   direction scores 0.5). ``ab`` reads it at the answer token (its own features), ``paired`` and
   ``prompt_contrast`` as response averages (the ``paired`` features; prompt_contrast's own contrast is the system
   prompt, which any direction along "not" would separate);
   Each mode's extraction features also feed every aggregator of ``aggregators`` (default :data:`TUNED_AGGREGATORS`:
   ``mean_diff``; ``pair_logistic``, which fits the pair differences and ignores what a statement adds to both
   answers; ``logistic``, which fits the answers as one pool and so also down-weights what varies from statement to
   statement, what a ranking ACROSS statements needs; :meth:`PersonaExtractor.with_aggregator`, no extra forward
   pass);
3. the (mode, aggregator, layer) with the highest tuning AUROC is chosen (ties: the first aggregator listed, then
   the lower layer);
   nothing of the evaluation split is read before;
4. :func:`~difflib_models.persona.validation.validate.validate_vectors` measures the chosen layer on the
   EVALUATION split against both nulls (label permutation and covariance-realistic random directions), at that
   one layer (``max_over_layers`` false: the layer was not chosen on these items). The summary records
   ``selection_split = "tuning"`` and every candidate's tuning AUROC (:class:`TuningCandidate`).

The steering dose-response of level ``full`` runs at the chosen layer only, on at most ``max_steer_items``
held-out A/B items (the uncapped check over every item and three layers is what made ``persona extract`` on a
1000-item file run for more than 40 minutes).

Re-validation (``persona validate``) of a vector file made this way (:func:`is_tuned`: its summary records
``selection_split = "tuning"``): :func:`revalidate_tuned` measures the file's chosen layer only, with the same
features (the file's mode on extraction, its stance reader on evaluation), nulls and steering cap as step 4, so it
reproduces the recorded held-out AUROC; no layer is re-selected on evaluation items. The trait must be the file it
was extracted from (:func:`tuned_trait` checks the recorded trait hash).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from difflib_models.errors import ConfigError, bad_value
from difflib_models.persona.contracts import TraitFeatures, TuningCandidate
from difflib_models.persona.extraction.extractor import AGGREGATORS, PersonaExtractor
from difflib_models.persona.extraction.vectors import PersonaVectorSet
from difflib_models.persona.traits import Trait, load_trait
from difflib_models.persona.validation.validate import ValidationResult, validate_vectors
from difflib_models.progress import progress
from difflib_models.stats import auroc

log = logging.getLogger(__name__)

TUNED_MODES: tuple[str, ...] = ("paired", "ab", "prompt_contrast")
TUNED_AGGREGATORS: tuple[str, ...] = ("mean_diff", "pair_logistic", "logistic")
"""Aggregators tried on every mode's extraction features (every tuned mode yields aligned pairs)."""
DEFAULT_MAX_STEER_ITEMS = 24
"""Held-out A/B items of the steering check on an imported trait (level ``full``)."""

__all__ = ["DEFAULT_MAX_STEER_ITEMS", "TUNED_AGGREGATORS", "TUNED_MODES", "TunedSelection", "available_modes",
           "is_tuned", "revalidate_tuned", "select_on_tuning", "stance_reader", "tuned_extract_and_validate",
           "tuned_trait", "validate_choice"]


@dataclass(frozen=True)
class TunedSelection:
    """The outcome of :func:`select_on_tuning`: the fitted extractor of every mode (with the aggregator of its best
    tuning candidate), the candidates' tuning AUROCs and the chosen (mode, layer, aggregator)."""

    mode: str
    layer: int
    candidates: tuple[TuningCandidate, ...]
    extractors: dict[str, PersonaExtractor]
    seconds: dict[str, float]
    aggregator: str = "mean_diff"

    @property
    def tuning_auroc(self) -> float:
        return next(c.auroc for c in self.candidates
                    if c.mode == self.mode and c.layer == self.layer and c.aggregator == self.aggregator)

    def best_per_mode(self) -> dict[str, TuningCandidate]:
        """Per mode the best candidate (ties: the first listed: the first aggregator, then the lower layer)."""
        out: dict[str, TuningCandidate] = {}
        for c in self.candidates:
            if c.mode not in out or c.auroc > out[c.mode].auroc:
                out[c.mode] = c
        return out


def available_modes(trait: Trait, modes: Sequence[str] | None = None) -> list[str]:
    """The tuned modes ``trait`` supports (``modes`` restricts them); ConfigError when none is left."""
    wanted = list(modes) if modes is not None else list(TUNED_MODES)
    bad = [m for m in wanted if m not in TUNED_MODES]
    if bad:
        raise ConfigError(bad_value("modes", bad, TUNED_MODES))
    has = {"paired": trait.has_paired, "ab": trait.has_ab, "prompt_contrast": bool(trait.instructions)}
    out = [m for m in wanted if has[m]]
    if not out:
        raise ConfigError(bad_value("modes", wanted, [m for m in TUNED_MODES if has[m]] or "none",
                                    f"Trait {trait.id!r} supports none of them."))
    if not trait.has_tuning:
        raise ConfigError(bad_value("trait", trait.id, "a trait with a tuning split (ab_items / paired_responses "
                                    "tuning:)", "Import a persona statement file, or add a tuning split."))
    if "prompt_contrast" in out and not trait.has_paired:
        out.remove("prompt_contrast")  # its yardstick is the paired stance contrast
    return out


def stance_reader(mode: str) -> str:
    """Which features measure a ``mode``'s directions on tuning / evaluation: ``ab`` its own (answer token),
    every other mode the ``paired`` stance responses."""
    return "ab" if mode == "ab" else "paired"


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm().clamp_min(1e-12)


def select_on_tuning(loaded: Any, trait: Trait | str, *, modes: Sequence[str] | None = None,
                     layers: str | Sequence[int] = "all", batch_size: int = 8,
                     show_progress: bool = True,
                     aggregators: Sequence[str] = TUNED_AGGREGATORS) -> TunedSelection:
    """Fit every available mode on the extraction split and choose (mode, layer) by the tuning-split AUROC of the
    stance contrast (module docstring). Reads nothing of the evaluation split."""
    trait = load_trait(trait)
    chosen_modes = available_modes(trait, modes)
    if not aggregators or any(a not in AGGREGATORS for a in aggregators):
        raise ConfigError(bad_value("aggregators", list(aggregators), f"a non-empty subset of {AGGREGATORS}"))
    extractors: dict[str, PersonaExtractor] = {}
    readers: dict[str, PersonaExtractor] = {}
    tuning: dict[str, tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]] = {}
    seconds: dict[str, float] = {}
    candidates: list[TuningCandidate] = []
    modes_iter = progress(chosen_modes, desc=f"fit + tune {trait.id}", total=len(chosen_modes), unit="mode") \
        if show_progress else chosen_modes
    for mode in modes_iter:
        t0 = time.perf_counter()
        ex = PersonaExtractor(mode=mode, aggregator=aggregators[0], layers=layers, batch_size=batch_size,
                              show_progress=show_progress)
        ex.fit(loaded, trait)
        variants = {agg: ex if agg == ex.aggregator else ex.with_aggregator(agg) for agg in aggregators}
        reader_mode = stance_reader(mode)
        if reader_mode not in readers:
            readers[reader_mode] = extractors.get(reader_mode) or PersonaExtractor(
                mode=reader_mode, layers=ex.layers_, batch_size=batch_size, show_progress=show_progress)
        if reader_mode not in tuning:
            tuning[reader_mode] = readers[reader_mode].features(loaded, trait, "tuning")
        pos, neg = tuning[reader_mode]
        for agg, variant in variants.items():
            for layer in ex.layers_:
                u = _unit(variant.vectors_[layer])
                candidates.append(TuningCandidate(mode=mode, layer=layer, aggregator=agg, auroc=float(
                    auroc((pos[layer] @ u).numpy(), (neg[layer] @ u).numpy()))))
        seconds[mode] = time.perf_counter() - t0
        sel = TunedSelection(mode=mode, layer=0, candidates=tuple(candidates), extractors={}, seconds={})
        best = sel.best_per_mode()[mode]
        extractors[mode] = variants[best.aggregator]
        log.info("tuned %s: %s best tuning AUROC %.3f at blocks.%d with %s (%.0f s)", trait.id, mode, best.auroc,
                 best.layer, best.aggregator, seconds[mode])
    sel = TunedSelection(mode="", layer=0, candidates=tuple(candidates), extractors=extractors, seconds=seconds)
    order = {m: i for i, m in enumerate(TUNED_MODES)}  # ties: paired before ab before prompt_contrast, low layer
    best = max(sel.best_per_mode().values(), key=lambda c: (c.auroc, -order[c.mode], -c.layer))
    return dataclasses.replace(sel, mode=best.mode, layer=best.layer, aggregator=best.aggregator)


def _at_layer(vs: PersonaVectorSet, layer: int) -> PersonaVectorSet:
    return dataclasses.replace(vs, vectors={layer: vs.vectors[layer]},
                               gap={k: v for k, v in vs.gap.items() if k == layer},
                               base_std={k: v for k, v in vs.base_std.items() if k == layer},
                               selected_layer=None, selection_reason=None, validation=None, filter_validation=None)


def _one(feats: dict[int, torch.Tensor], layer: int) -> dict[int, torch.Tensor]:
    return {layer: feats[layer]}


def _validate_at_layer(loaded: Any, trait: Trait, vs: PersonaVectorSet, layer: int, features: TraitFeatures, *,
                       level: str, n_null: int, max_steer_items: int | None, **validate_kwargs: Any) -> ValidationResult:
    """Step 4 of the module docstring: ``vs`` at ``layer`` only (nulls without max over layers, steering there)."""
    return validate_vectors(_at_layer(vs, layer), features, level=level, loaded=loaded, trait=trait, n_null=n_null,
                            shortlist=1, steer_depth=None, max_steer_items=max_steer_items, **validate_kwargs)


def validate_choice(
    loaded: Any, trait: Trait, sel: TunedSelection, mode: str | None = None, *, level: str = "quick",
    n_null: int = 200, batch_size: int = 8, max_steer_items: int = DEFAULT_MAX_STEER_ITEMS,
    show_progress: bool = True, evaluation_cache: dict[str, tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]]
    | None = None, **validate_kwargs: Any,
) -> tuple[PersonaVectorSet, ValidationResult]:
    """Validate ``mode`` (default: the chosen one) at its best tuning layer on the EVALUATION split against both
    nulls (at that one layer). ``evaluation_cache`` ({reader mode: features}) saves re-reading the evaluation
    stance features when several modes are validated."""
    mode = sel.mode if mode is None else mode
    if mode not in sel.extractors:
        raise ConfigError(bad_value("mode", mode, sorted(sel.extractors), "a mode fitted by select_on_tuning"))
    ex = sel.extractors[mode]
    layer = sel.best_per_mode()[mode].layer
    reader_mode = stance_reader(mode)
    cache = evaluation_cache if evaluation_cache is not None else {}
    if reader_mode not in cache:
        reader = sel.extractors.get(reader_mode) or PersonaExtractor(
            mode=reader_mode, layers=ex.layers_, batch_size=batch_size, show_progress=show_progress)
        cache[reader_mode] = reader.features(loaded, trait, "evaluation")
    ev_pos, ev_neg = cache[reader_mode]
    features = TraitFeatures(extraction_pos=_one(ex.pos_features_, layer), extraction_neg=_one(ex.neg_features_, layer),
                             evaluation_pos=_one(ev_pos, layer), evaluation_neg=_one(ev_neg, layer))
    vs = ex.to_vector_set()
    result = _validate_at_layer(loaded, trait, vs, layer, features, level=level, n_null=n_null,
                                max_steer_items=max_steer_items, **validate_kwargs)
    per_mode = ", ".join(f"{c.mode} {c.auroc:.3f}@{c.layer} ({c.aggregator})" for c in sel.best_per_mode().values())
    n_tune = len(trait.split_paired("tuning") or trait.split_ab("tuning"))
    reason = (f"mode and layer chosen on the tuning split ({n_tune} statements; best tuning AUROC per mode: "
              f"{per_mode}); held-out AUROC {result.summary.selected.auroc:.3f} on the evaluation split at "
              f"blocks.{layer}")
    summary = dataclasses.replace(result.summary, selection_reason=reason, selection_split="tuning",
                                  tuning=sel.candidates)
    result = dataclasses.replace(result, summary=summary)
    return vs.with_validation(summary), result


def tuned_extract_and_validate(
    loaded: Any, trait: Trait | str, *, modes: Sequence[str] | None = None, layers: str | Sequence[int] = "all",
    level: str = "quick", n_null: int = 200, batch_size: int = 8, max_steer_items: int = DEFAULT_MAX_STEER_ITEMS,
    show_progress: bool = True, aggregators: Sequence[str] = TUNED_AGGREGATORS, **validate_kwargs: Any,
) -> tuple[PersonaVectorSet, ValidationResult, TunedSelection]:
    """Choose mode and layer on the tuning split, validate that layer on the evaluation split against both nulls;
    returns the chosen mode's vector set (every layer, the validation summary of the chosen layer recorded), the
    validation result and the selection."""
    trait = load_trait(trait)
    sel = select_on_tuning(loaded, trait, modes=modes, layers=layers, batch_size=batch_size,
                           show_progress=show_progress, aggregators=aggregators)
    vs, result = validate_choice(loaded, trait, sel, level=level, n_null=n_null, batch_size=batch_size,
                                 max_steer_items=max_steer_items, show_progress=show_progress, **validate_kwargs)
    return vs, result, sel


# ---------------------------------------------------------------------- re-validation of a tuned vector file
def is_tuned(vs: PersonaVectorSet) -> bool:
    """Whether ``vs`` records a validation whose mode and layer were chosen on a tuning split."""
    return vs.validation is not None and vs.validation.selection_split == "tuning"


def _short(digest: str) -> str:
    return digest.split(":")[-1][:12] + "..."


def tuned_trait(vs: PersonaVectorSet, spec: str | Trait | None, *, argument: str = "trait") -> Trait:
    """The trait a tuned vector file was extracted from: ``spec`` loaded and checked against the recorded trait hash
    (the recorded id when the file has no hash). ConfigError naming ``argument`` when ``spec`` is missing or is
    another trait (an imported file cannot be found from the trait id alone)."""
    recorded = f"trait {vs.trait_id!r}" + (f", hash {_short(vs.trait_hash)}" if vs.trait_hash else "")
    expected = f"the trait file the vectors were extracted from ({recorded})"
    hint = ("Its layer was chosen on that file's tuning split; the tuned re-validation reads the same file's "
            f"evaluation split. Pass {argument} PATH with the .jsonl/.json/.yaml given to `persona extract`.")
    if spec is None:
        raise ConfigError(bad_value(argument, None, expected, hint))
    trait = load_trait(spec)
    same = trait.hash == vs.trait_hash if vs.trait_hash else trait.id == vs.trait_id
    if not same:
        raise ConfigError(bad_value(argument, spec if isinstance(spec, str) else trait.id, expected,
                                    f"it is trait {trait.id!r}, hash {_short(trait.hash)}: another file or another "
                                    f"version of it. {hint}"))
    return trait


def revalidate_tuned(loaded: Any, vs: PersonaVectorSet, trait: Trait, *, level: str = "quick", n_null: int = 200,
                     batch_size: int = 8, max_steer_items: int = DEFAULT_MAX_STEER_ITEMS, show_progress: bool = True,
                     **validate_kwargs: Any) -> ValidationResult:
    """Re-measure a tuned vector file (:func:`is_tuned`) as the tuned route measured it: the recorded layer only,
    the file's directions (nothing re-fitted), extraction features of the file's mode and evaluation features of
    its stance reader at that layer, both nulls at that one layer, steering (level ``full``) there on at most
    ``max_steer_items`` items. ``trait`` should come from :func:`tuned_trait`. The summary keeps
    ``selection_split = "tuning"`` and the recorded tuning candidates."""
    if not is_tuned(vs):
        raise ConfigError(bad_value("vectors", vs.trait_id, "a vector file whose validation records "
                                    "selection_split 'tuning'", "validate_vectors re-validates other files"))
    if vs.mode not in TUNED_MODES:
        raise ConfigError(bad_value("vectors.mode", vs.mode, TUNED_MODES, "re-extract the vectors"))
    recorded = vs.validation
    assert recorded is not None  # is_tuned
    layer = recorded.selected_layer
    extractor = PersonaExtractor(mode=vs.mode, layers=[layer], batch_size=batch_size,
                                 assistant_prefix=vs.assistant_prefix, show_progress=show_progress)
    ext_pos, ext_neg = extractor.features(loaded, trait, "extraction")
    reader_mode = stance_reader(vs.mode)
    reader = extractor if reader_mode == vs.mode else PersonaExtractor(
        mode=reader_mode, layers=[layer], batch_size=batch_size, show_progress=show_progress)
    ev_pos, ev_neg = reader.features(loaded, trait, "evaluation")
    features = TraitFeatures(extraction_pos=ext_pos, extraction_neg=ext_neg, evaluation_pos=ev_pos,
                             evaluation_neg=ev_neg)
    result = _validate_at_layer(loaded, trait, vs, layer, features, level=level, n_null=n_null,
                                max_steer_items=max_steer_items, **validate_kwargs)
    reason = (f"tuned procedure: the layer recorded in the file (blocks.{layer}, chosen on the tuning split at "
              f"extraction), not re-selected; held-out AUROC {result.summary.selected.auroc:.3f} on the evaluation "
              f"split ({vs.mode} directions, {reader_mode} stance features)")
    summary = dataclasses.replace(result.summary, selection_reason=reason, selection_split="tuning",
                                  tuning=recorded.tuning)
    return dataclasses.replace(result, summary=summary)
