"""Is a vector good for FILTERING? Rank trait-matching vs non-matching responses to the same prompt.

A persona vector that separates pos/neg prompts (its extraction validation) need not rank training rows: the data
filter scores a row by its mean response-token projection minus a baseline (:mod:`~difflib_models.persona.
filtering`), and prompt-to-prompt offsets or a direction that reads style instead of the trait blur the ranking.
This module measures the filter's own job, on pairs ``(prompt, matching response, other response)``:

- every response is teacher-forced through the BASE model; one forward per batch reads every candidate layer
  (:func:`~difflib_models.persona.shift.core.read_residuals`): the response-token mean, the last prompt token (the
  ``proxy`` baseline) and, with ``exact``, the response-token mean of the base model's own greedy answer;
- row score at layer L with method m: ``raw`` = response projection; ``proxy`` = minus the last-prompt-token
  projection; ``exact`` = minus the projection of the base's own answer (the filter's methods);
- the pairs are split (seeded, by prompt) into a tuning and an evaluation part; the method and the layer with the
  best tuning AUROC are kept, and AUROC, precision@k (k = the number of matching rows) and the within-prompt win
  rate are reported on the evaluation part only (:class:`~difflib_models.persona.extraction.vectors.FilterValidation`,
  stored in the vector file by :func:`with_filter_validation`).

Pairs come from a trait's ``paired_responses`` (:func:`pairs_from_trait`) or from A/B items, answered with the text
of each option (:func:`pairs_from_ab`). :data:`LOW_AUROC` is the level below which ``persona filter`` warns.

Stacked readouts (:mod:`~difflib_models.persona.filtering.readout`): with enough paired responses outside the
evaluation split (:data:`~difflib_models.persona.filtering.readout.MIN_STACKED_PAIRS`, extraction + tuning),
:func:`validate_with_readouts` also fits one logistic readout per block on those pairs, takes the block whose
readout ranks the tuning part best as a centre, fits readouts over spans of blocks around it
(:func:`~difflib_models.persona.filtering.readout.spans_around`), and lets every candidate (the file's per-block
directions, the fitted readouts) compete on the SAME tuning part; the evaluation part is measured once, for the
winner. :func:`filter_validate_trait` runs it on a trait and returns the vector file with the record (and the
winning readout's slices).

The wording check (:func:`wording_check`, run by :func:`filter_validate_trait`): A/B data are often lopsided in
their wording (the trait-matching answer starts with "Yes" more often, or is the shorter option), and a direction
that reads the wording ranks such pairs well without reading the trait. The record keeps the evaluation AUROC of a
first-word + length classifier fitted on the same pairs (``surface_auroc``) and the chosen readout's AUROC among
answers that start with the same word (``eval_word_stratified_auroc``); :func:`describe` flags a vector that does
not beat the wording by :data:`~difflib_models.persona.extraction.vectors.WORDING_MARGIN`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from difflib_models.errors import ConfigError, bad_value
from difflib_models.persona.extraction.vectors import WORDING_MARGIN, FilterValidation, PersonaVectorSet
from difflib_models.persona.filtering.readout import MIN_STACKED_PAIRS, Readout, fit_stacked, spans_around
from difflib_models.persona.filtering.scoring import ChatSample, encode_sample, greedy_answers
from difflib_models.persona.shift.core import covariance_null_directions, probe_mode, read_response_and_prompt
from difflib_models.persona.traits import chat
from difflib_models.persona.traits.chat import EncodedPair, pad_id
from difflib_models.persona.traits.schema import option_text
from difflib_models.stats import auroc

log = logging.getLogger(__name__)

SCORE_METHODS: tuple[str, ...] = ("raw", "proxy", "exact")
LOW_AUROC = 0.8
"""Evaluation AUROC below which a vector is reported as unfit for filtering (``persona filter`` warns)."""

__all__ = ["LOW_AUROC", "PairFeatures", "ResponsePair", "SCORE_METHODS", "collect_features", "describe",
           "filter_validate_trait", "fit_readouts", "is_low", "pair_scores", "pairs_from_ab", "pairs_from_trait",
           "random_direction_baseline", "rank_metrics", "readout_scores", "split_pairs", "subset_pairs",
           "validate_for_filtering", "validate_on_trait", "validate_with_readouts", "with_filter_validation",
           "wording_check"]


@dataclass(frozen=True)
class ResponsePair:
    """One prompt (chat messages before the answer) answered once with the trait and once without."""

    id: str
    prompt: tuple[tuple[str, str], ...]
    """``((role, content), ...)``: hashable; :meth:`messages` gives the chat form."""
    matching: str
    other: str

    def messages(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.prompt]


def pairs_from_trait(trait: Any, split: str = "evaluation") -> list[ResponsePair]:
    """Pairs from a trait's ``paired_responses`` (trait answer vs neutral answer to one user prompt)."""
    items = trait.split_paired(split)
    if not items:
        raise ConfigError(bad_value("trait", trait.id, "a trait with paired_responses in the "
                                    f"{split!r} split", "Filter validation needs responses to score."))
    return [ResponsePair(id=f"{trait.id}/paired/{split}/{i}", prompt=(("user", p.prompt),), matching=p.trait,
                         other=p.neutral) for i, p in enumerate(items)]


def pairs_from_ab(items: Sequence[Any], *, id_prefix: str = "ab") -> list[ResponsePair]:
    """Pairs from A/B items (``question``, ``matching``, ``not_matching`` letters, e.g. ``"(A)"``): the same
    question answered with the text of the matching option and with the text of the other one."""
    out = []
    for i, item in enumerate(items):
        out.append(ResponsePair(id=f"{id_prefix}/{i}", prompt=(("user", item.question),),
                                matching=option_text(item.question, item.matching),
                                other=option_text(item.question, item.not_matching)))
    return out


# ------------------------------------------------------------------------------------------------ features
@dataclass
class PairFeatures:
    """Residual features of N pairs per layer (float32, CPU): ``matching`` / ``other`` response-token means
    [N, d], ``last_prompt`` [N, d] (last prompt token), ``own`` [N, d] (the base's greedy answer; ``exact`` only)."""

    matching: dict[int, torch.Tensor]
    other: dict[int, torch.Tensor]
    last_prompt: dict[int, torch.Tensor]
    own: dict[int, torch.Tensor] | None = None

    @property
    def layers(self) -> list[int]:
        return sorted(self.matching)

    def __len__(self) -> int:
        return int(next(iter(self.matching.values())).shape[0])

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Flat ``{name: tensor}`` (for a safetensors cache)."""
        out = {}
        for name in ("matching", "other", "last_prompt", "own"):
            for layer, t in (getattr(self, name) or {}).items():
                out[f"{name}.{layer}"] = t.contiguous()
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> PairFeatures:
        parts: dict[str, dict[int, torch.Tensor]] = {}
        for key, t in tensors.items():
            name, layer = key.rsplit(".", 1)
            parts.setdefault(name, {})[int(layer)] = t
        return cls(matching=parts["matching"], other=parts["other"], last_prompt=parts["last_prompt"],
                   own=parts.get("own"))


def _read(model: torch.nn.Module, encoded: Sequence[Any], layers: list[int], pad: int, batch_size: int
          ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Response-token means and last-prompt-token residuals of encoded pairs: two {layer: [N, d]}."""
    resp: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    last: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        ids, mask = chat.pad_batch([e.ids for e in chunk], pad_token_id=pad, padding_side="right")
        token_mask = torch.zeros_like(mask, dtype=torch.bool)
        for row, e in enumerate(chunk):
            token_mask[row, e.prompt_len : len(e.ids)] = True
        index = torch.tensor([e.prompt_len - 1 for e in chunk])
        r, lp = read_response_and_prompt(model, ids, mask, layers, token_mask=token_mask, index=index)
        for layer in layers:
            resp[layer].append(r[layer])
            last[layer].append(lp[layer])
    return ({k: torch.cat(v) for k, v in resp.items()}, {k: torch.cat(v) for k, v in last.items()})


def collect_features(
    loaded: Any, pairs: Sequence[ResponsePair], layers: Sequence[int], *, exact: bool = False,
    batch_size: int = 8, max_length: int = 512, max_new_tokens: int = 48,
) -> PairFeatures:
    """Teacher-force every pair through the BASE model of ``loaded`` (a peft model with its adapter disabled)."""
    if not pairs:
        raise ConfigError(bad_value("pairs", [], "at least one response pair"))
    if loaded.is_peft:
        with loaded.base_view() as base:
            return _collect(base, loaded.tokenizer, pairs, list(layers), exact, batch_size, max_length,
                            max_new_tokens)
    return _collect(loaded.model, loaded.tokenizer, pairs, list(layers), exact, batch_size, max_length,
                    max_new_tokens)


def _collect(model: torch.nn.Module, tokenizer: Any, pairs: Sequence[ResponsePair], layers: list[int], exact: bool,
             batch_size: int, max_length: int, max_new_tokens: int) -> PairFeatures:
    pad = pad_id(tokenizer)

    def enc(p: ResponsePair, response: str) -> Any:
        return encode_sample(tokenizer, ChatSample(id=p.id, prompt=p.messages(), response=response, line=0, raw=""),
                             max_length)

    match_enc = [enc(p, p.matching) for p in pairs]
    other_enc = [enc(p, p.other) for p in pairs]
    with probe_mode(model):
        m_resp, m_last = _read(model, match_enc, layers, pad, batch_size)
        o_resp, _ = _read(model, other_enc, layers, pad, batch_size)
    own = None
    if exact:
        prompts = [e.ids[: e.prompt_len] for e in match_enc]
        answers = greedy_answers(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
        own_enc = [EncodedPair(ids=pr + (a or [pad]), prompt_len=len(pr)) for pr, a in zip(prompts, answers,
                                                                                           strict=True)]
        with probe_mode(model):
            own, _ = _read(model, own_enc, layers, pad, batch_size)
    return PairFeatures(matching=m_resp, other=o_resp, last_prompt=m_last, own=own)


# ------------------------------------------------------------------------------------------------ scoring
def pair_scores(features: PairFeatures, layer: int, unit: torch.Tensor, method: str) -> tuple[np.ndarray,
                                                                                             np.ndarray]:
    """Filter scores of the matching and the other response of every pair at ``layer`` (method as the filter's)."""
    return readout_scores(features, Readout.single(layer, unit), method)


def readout_scores(features: PairFeatures, readout: Readout, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Filter scores of the matching and the other response of every pair on ``readout`` (method as the
    filter's; a stacked readout sums its blocks' projections, as the filter does)."""
    if method not in SCORE_METHODS:
        raise ConfigError(bad_value("method", method, SCORE_METHODS))
    m = readout.project(features.matching).numpy()
    o = readout.project(features.other).numpy()
    if method == "raw":
        return m, o
    if method == "proxy":
        base = readout.project(features.last_prompt).numpy()
    else:
        if features.own is None:
            raise ConfigError(bad_value("method", "exact", "features collected with exact=True"))
        base = readout.project(features.own).numpy()
    return m - base, o - base


def rank_metrics(matching: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """AUROC (matching rows above other rows, ties count half), precision@k (k = number of matching rows) and
    the within-prompt win rate of one set of pairs."""
    matching, other = np.asarray(matching, dtype=float), np.asarray(other, dtype=float)
    scores = np.concatenate([matching, other])
    labels = np.concatenate([np.ones(len(matching), bool), np.zeros(len(other), bool)])
    k = len(matching)
    top = np.argsort(-scores, kind="stable")[:k]
    pooled = float(np.sqrt((matching.var() + other.var()) / 2.0))
    return {"auroc": float(auroc(matching, other)), "precision_at_k": float(labels[top].mean()), "k": k,
            "pair_win_rate": float(np.mean(matching > other) + 0.5 * np.mean(matching == other)),
            "cohens_d": float((matching.mean() - other.mean()) / pooled) if pooled > 0 else 0.0}


def split_pairs(n: int, tune_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of pair indices into (tuning, evaluation); both non-empty."""
    if n < 2:
        raise ConfigError(bad_value("pairs", n, ">= 2 pairs (one to tune on, one to evaluate)"))
    if not 0.0 < tune_fraction < 1.0:
        raise ConfigError(bad_value("tune_fraction", tune_fraction, "a fraction in (0, 1)"))
    order = np.random.default_rng(seed).permutation(n)
    n_tune = min(max(1, round(n * tune_fraction)), n - 1)
    return np.sort(order[:n_tune]), np.sort(order[n_tune:])


def subset_pairs(features: PairFeatures, idx: Any) -> PairFeatures:
    """The pairs ``idx`` (indices) of ``features``."""
    t = torch.as_tensor(idx, dtype=torch.long)
    pick = lambda d: {k: v[t] for k, v in d.items()} if d is not None else None  # noqa: E731
    return PairFeatures(matching=pick(features.matching), other=pick(features.other),
                        last_prompt=pick(features.last_prompt), own=pick(features.own))


def select_on_tuning(features: PairFeatures, units: dict[int, torch.Tensor], methods: Sequence[str]
                     ) -> tuple[str, int, dict[str, dict[int, float]]]:
    """The (method, layer) with the best tuning AUROC; ties (small tuning sets saturate at 1.0) go to the larger
    Cohen's d of the scores, then to the first method given and the lower layer."""
    table: dict[str, dict[int, float]] = {}
    best: tuple[float, float, str, int] | None = None
    for method in methods:
        table[method] = {}
        for layer in sorted(units):
            m = rank_metrics(*pair_scores(features, layer, units[layer], method))
            table[method][layer] = m["auroc"]
            if best is None or (m["auroc"], m["cohens_d"]) > best[:2]:
                best = (m["auroc"], m["cohens_d"], method, layer)
    assert best is not None
    return best[2], best[3], table


def validate_for_filtering(
    vectors: PersonaVectorSet, features: PairFeatures, *, methods: Sequence[str] = ("proxy",),
    layers: Sequence[int] | None = None, tune_fraction: float = 0.5, seed: int = 0, source: str = "",
) -> FilterValidation:
    """Choose the method and layer on a tuning split of ``features`` (pairs the vectors were NOT fitted on), and
    measure the ranking on the evaluation split. Returns the record to store (:func:`with_filter_validation`)."""
    bad = [m for m in methods if m not in SCORE_METHODS]
    if not methods or bad:
        raise ConfigError(bad_value("methods", list(methods), SCORE_METHODS))
    if "exact" in methods and features.own is None:
        raise ConfigError(bad_value("methods", list(methods), "no 'exact' without the base's own answers",
                                    "collect_features(..., exact=True)"))
    candidates = sorted(set(vectors.layers if layers is None else layers) & set(features.layers))
    if not candidates:
        raise ConfigError(bad_value("layers", list(layers or []), vectors.layers, "no layer has both a vector and "
                                    "features"))
    units = {layer: vectors.unit(layer) for layer in candidates}
    tune, ev = split_pairs(len(features), tune_fraction, seed)
    method, layer, table = select_on_tuning(subset_pairs(features, tune), units, methods)
    metrics = rank_metrics(*pair_scores(subset_pairs(features, ev), layer, units[layer], method))
    record = FilterValidation(
        filter_layer=layer, method=method, filter_auroc=table[method], eval_auroc=metrics["auroc"],
        eval_precision_at_k=metrics["precision_at_k"], eval_pair_win_rate=metrics["pair_win_rate"],
        n_tune=len(tune), n_eval=len(ev), seed=seed, source=source,
        method_auroc={m: max(v.values()) for m, v in table.items()})
    log.info("filter validation of %s: %s at blocks.%d, evaluation AUROC %.3f (%d pairs)", vectors.trait_id,
             method, layer, record.eval_auroc, record.n_eval)
    return record


def fit_readouts(fit: PairFeatures, tuning: PairFeatures, layers: Sequence[int], methods: Sequence[str]
                 ) -> list[Readout]:
    """The stacked candidates of :func:`validate_with_readouts`: one logistic readout per block of ``layers``
    fitted on ``fit`` (pairs outside the evaluation split), the block whose readout ranks ``tuning`` best (AUROC,
    then Cohen's d, over ``methods``) as the centre, and readouts over the spans around it."""
    singles: dict[int, Readout] = {}
    for layer in layers:
        try:
            singles[layer] = fit_stacked(fit.matching, fit.other, [layer])
        except ConfigError:  # a block where the two answers do not differ at all fits a zero vector
            log.info("no readout at blocks.%d: the fit gives a zero direction", layer)
    if not singles:
        return []
    best: tuple[float, float, int] | None = None
    for layer, r in singles.items():
        for method in methods:
            m = rank_metrics(*readout_scores(tuning, r, method))
            if best is None or (m["auroc"], m["cohens_d"]) > best[:2]:
                best = (m["auroc"], m["cohens_d"], layer)
    assert best is not None
    center = best[2]
    spans = spans_around(center, sorted(singles))
    log.info("stacked filter readouts: centre blocks.%d, spans %s", center, [f"{s[0]}-{s[-1]}" for s in spans])
    out = [singles[center]]
    for span in spans:
        try:
            out.append(fit_stacked(fit.matching, fit.other, span))
        except ConfigError:
            log.info("no readout over blocks.%d-%d: the fit gives a zero direction", span[0], span[-1])
    return out


def validate_with_readouts(
    vectors: PersonaVectorSet, features: PairFeatures, fit: PairFeatures | None, *,
    methods: Sequence[str] = ("proxy",), tune_fraction: float = 0.5, seed: int = 0, source: str = "",
    min_pairs: int = MIN_STACKED_PAIRS,
) -> tuple[FilterValidation, Readout | None]:
    """:func:`validate_for_filtering` with stacked candidates: readouts fitted on ``fit`` (:func:`fit_readouts`;
    None or fewer than ``min_pairs`` pairs: the file's per-block directions only) compete with the file's
    directions on the same tuning split of ``features``. Returns the record and the winning fitted readout (None
    when a per-block direction of the file won: a stacked readout must rank the tuning part strictly better, in
    AUROC, than the file's chosen block)."""
    single = validate_for_filtering(vectors, features, methods=methods, tune_fraction=tune_fraction, seed=seed,
                                    source=source)
    if fit is None or len(fit) < min_pairs:
        if fit is not None:
            log.info("no stacked filter readout: %d fitting pairs (< %d)", len(fit), min_pairs)
        return single, None
    layers = sorted(set(vectors.layers) & set(features.layers) & set(fit.layers))
    tune, ev = split_pairs(len(features), tune_fraction, seed)
    tuning = subset_pairs(features, tune)
    ref = rank_metrics(*pair_scores(tuning, single.filter_layer, vectors.unit(single.filter_layer), single.method))
    best: tuple[float, float, str, Readout] | None = None
    table: dict[str, dict[str, float]] = {m: {} for m in methods}
    for r in fit_readouts(fit, tuning, layers, methods):
        key = f"{r.layers[0]}-{r.layers[-1]}"
        for method in methods:
            m = rank_metrics(*readout_scores(tuning, r, method))
            table[method][key] = m["auroc"]
            if best is None or (m["auroc"], m["cohens_d"]) > best[:2]:
                best = (m["auroc"], m["cohens_d"], method, r)
    if best is None or best[0] <= ref["auroc"]:  # ties in AUROC (small tuning sets saturate) go to the file's direction
        log.info("the file's blocks.%d (%s) ranks the tuning pairs at least as well as every stacked readout",
                 single.filter_layer, single.method)
        return dataclasses.replace(single, readout_auroc=table[single.method]), None
    method, readout = best[2], best[3]
    metrics = rank_metrics(*readout_scores(subset_pairs(features, ev), readout, method))
    per_block = single.filter_auroc if method == single.method else {  # the file's blocks, under the kept method
        layer: rank_metrics(*pair_scores(tuning, layer, vectors.unit(layer), method))["auroc"]
        for layer in single.filter_auroc}
    record = dataclasses.replace(
        single, filter_layer=readout.deepest, method=method, filter_auroc=per_block, eval_auroc=metrics["auroc"],
        eval_precision_at_k=metrics["precision_at_k"], eval_pair_win_rate=metrics["pair_win_rate"],
        readout_layers=tuple(readout.layers), readout_auroc=table[method],
        method_auroc={m: max([single.method_auroc.get(m, float("-inf")), *table[m].values()]) for m in methods})
    log.info("filter validation of %s: %s, method %s, evaluation AUROC %.3f (%d pairs)", vectors.trait_id,
             readout.label, method, record.eval_auroc, record.n_eval)
    return record, readout


def random_direction_baseline(
    vectors: PersonaVectorSet, features: PairFeatures, covariance_acts: dict[int, torch.Tensor], *,
    orient: dict[int, torch.Tensor] | None = None, n_draws: int = 8, methods: Sequence[str] = ("proxy",),
    layers: Sequence[int] | None = None, tune_fraction: float = 0.5, seed: int = 0,
) -> list[float]:
    """Evaluation AUROCs of ``n_draws`` norm-matched random directions from N(0, Sigma_hat) (shrinkage covariance
    of ``covariance_acts[layer]`` [n, d], e.g. the extraction features centred per class), each put through the
    SAME protocol as the real vector (method and layer chosen on the same tuning split). ``orient[layer]`` (e.g.
    mean(pos) - mean(neg) of the extraction features) fixes each draw's sign as a fitted direction's would be."""
    candidates = sorted(set(vectors.layers if layers is None else layers) & set(features.layers)
                        & set(covariance_acts))
    draws = {layer: covariance_null_directions(covariance_acts[layer], n_draws, norm=vectors.norms[layer],
                                               seed=seed * 1009 + layer)
             for layer in candidates}
    out = []
    for j in range(n_draws):
        dirs = {}
        for layer in candidates:
            d = draws[layer][j]
            if orient is not None and float(d @ orient[layer].to(d.dtype)) < 0:
                d = -d
            dirs[layer] = d
        fake = dataclasses.replace(vectors, vectors=dirs, selected_layer=None, filter_validation=None)
        rec = validate_for_filtering(fake, features, methods=methods, layers=candidates,
                                     tune_fraction=tune_fraction, seed=seed, source="random")
        out.append(rec.eval_auroc)
    return out


def _evaluation_features(loaded: Any, vectors: PersonaVectorSet, trait: Any, methods: Sequence[str],
                         batch_size: int) -> PairFeatures | None:
    """Features of the trait's evaluation paired responses; None (logged) when it has fewer than 4."""
    items = trait.split_paired("evaluation")
    if len(items) < 4:
        log.warning("trait %s has %d evaluation paired responses (< 4): no filter validation recorded", trait.id,
                    len(items))
        return None
    return collect_features(loaded, pairs_from_trait(trait, "evaluation"), vectors.layers,
                            exact="exact" in methods, batch_size=batch_size)


def validate_on_trait(
    loaded: Any, vectors: PersonaVectorSet, trait: Any, *, methods: Sequence[str] = ("proxy",),
    tune_fraction: float = 0.5, seed: int = 0, batch_size: int = 8,
) -> FilterValidation | None:
    """Filter validation on the trait's ``paired_responses`` EVALUATION split (pairs no extraction saw), with the
    wording check (:func:`wording_check`); None (logged) when the trait has fewer than 4 such pairs."""
    feats = _evaluation_features(loaded, vectors, trait, methods, batch_size)
    if feats is None:
        return None
    record = validate_for_filtering(vectors, feats, methods=methods, tune_fraction=tune_fraction, seed=seed,
                                    source=f"trait {trait.id} paired_responses/evaluation")
    chosen = Readout.single(record.filter_layer, vectors.unit(record.filter_layer))
    return wording_check(record, chosen, feats, pairs_from_trait(trait, "evaluation"), _fitting_pairs(trait),
                         tune_fraction=tune_fraction, seed=seed)


def _fitting_pairs(trait: Any) -> list[ResponsePair]:
    """The trait's paired responses outside the evaluation split (extraction, then tuning when it has one)."""
    return [p for split in ("extraction", "tuning") if trait.split_paired(split)
            for p in pairs_from_trait(trait, split)]


def filter_validate_trait(
    loaded: Any, vectors: PersonaVectorSet, trait: Any, *, methods: Sequence[str] = ("proxy", "raw"),
    stacked: bool | None = None, tune_fraction: float = 0.5, seed: int = 0, batch_size: int = 8,
) -> PersonaVectorSet:
    """``vectors`` with its filter validation on the trait's ``paired_responses`` EVALUATION split, as
    ``persona extract`` records it: the file's per-block directions and, when the trait has at least
    :data:`~difflib_models.persona.filtering.readout.MIN_STACKED_PAIRS` paired responses in its extraction and
    tuning splits (``stacked=None``; True/False forces or forbids), stacked readouts fitted on those
    (:func:`validate_with_readouts`). Unchanged (logged) when the evaluation split has fewer than 4 pairs."""
    feats = _evaluation_features(loaded, vectors, trait, methods, batch_size)
    if feats is None:
        return vectors
    fit_pairs = _fitting_pairs(trait)
    want = len(fit_pairs) >= MIN_STACKED_PAIRS if stacked is None else stacked
    if want and len(fit_pairs) < 2:
        raise ConfigError(bad_value("stacked", stacked, "False for a trait without paired responses to fit on"))
    fit = collect_features(loaded, fit_pairs, vectors.layers, batch_size=batch_size) if want else None
    record, readout = validate_with_readouts(vectors, feats, fit, methods=methods, tune_fraction=tune_fraction,
                                             seed=seed, source=f"trait {trait.id} paired_responses/evaluation",
                                             min_pairs=2 if stacked else MIN_STACKED_PAIRS)
    chosen = readout or Readout.single(record.filter_layer, vectors.unit(record.filter_layer))
    record = wording_check(record, chosen, feats, pairs_from_trait(trait, "evaluation"), fit_pairs,
                           tune_fraction=tune_fraction, seed=seed)
    return with_filter_validation(vectors, record, readout)


def wording_check(record: FilterValidation, readout: Readout, features: PairFeatures,
                  pairs: Sequence[ResponsePair], fit_pairs: Sequence[ResponsePair], *, tune_fraction: float = 0.5,
                  seed: int = 0) -> FilterValidation:
    """``record`` with ``surface_auroc`` and ``eval_word_stratified_auroc`` measured on the same evaluation part
    (``pairs``: the texts of ``features``' rows, in order). The first-word + length classifier is fitted on
    ``fit_pairs`` (the readouts' fitting pairs), or on the tuning part when fewer than 2 are given."""
    from difflib_models.persona.filtering.surface import fit_surface, stratified_auroc

    if len(pairs) != len(features):
        raise ConfigError(bad_value("pairs", len(pairs), f"one text pair per feature row ({len(features)})"))
    tune, ev = split_pairs(len(features), tune_fraction, seed)
    train = list(fit_pairs) if len(fit_pairs) >= 2 else [pairs[i] for i in tune]
    surface = fit_surface([p.matching for p in train], [p.other for p in train])
    m_txt, o_txt = [pairs[i].matching for i in ev], [pairs[i].other for i in ev]
    surface_auroc = float(auroc(surface.score(m_txt), surface.score(o_txt)))
    m, o = readout_scores(subset_pairs(features, ev), readout, record.method)
    stratified, _ = stratified_auroc(m, o, m_txt, o_txt)
    out = dataclasses.replace(record, surface_auroc=surface_auroc, eval_word_stratified_auroc=stratified)
    if out.reads_wording:
        log.warning("filter validation of %s: the answers' first word and length alone rank the evaluation pairs at "
                    "AUROC %.3f (the vector: %.3f); the pairs cannot show that it reads more than the wording",
                    record.source, surface_auroc, record.eval_auroc)
    return out


def is_low(record: FilterValidation | None) -> bool:
    """True when there is no record or its evaluation AUROC is below :data:`LOW_AUROC` (NaN included)."""
    return record is None or not record.eval_auroc >= LOW_AUROC


def describe(record: FilterValidation | None) -> str:
    """One line for users: the evaluation AUROC, where it was measured, and whether it is low."""
    if record is None:
        return ("not validated for filtering: this vector file has no filter_validation record, so nobody "
                "measured whether it ranks trait-matching above non-matching answers to the same prompt")
    level = "LOW" if is_low(record) else "ok"
    where = (f"on a stacked readout over {record.readout_span}" if record.readout_span
             else f"at blocks.{record.filter_layer}")
    line = (f"filter validation {level}: AUROC {record.eval_auroc:.3f} (precision@k {record.eval_precision_at_k:.2f}, "
            f"{record.n_eval} held-out pairs, {record.source}) {where}, method "
            f"{record.method}; warn below {LOW_AUROC}")
    if record.surface_auroc is None:
        return line
    same = ("n/a" if record.eval_word_stratified_auroc is None
            else f"{record.eval_word_stratified_auroc:.3f}")
    line += (f"; wording alone (first word + length) {record.surface_auroc:.3f}, among answers with the same first "
             f"word {same}")
    if record.reads_wording:
        line += (f"; WORDING: not {WORDING_MARGIN} above what the wording alone reaches, so these pairs cannot show "
                 "that the vector reads the trait rather than the wording")
    return line


def with_filter_validation(vectors: PersonaVectorSet, record: FilterValidation, readout: Readout | None = None
                           ) -> PersonaVectorSet:
    """A copy of ``vectors`` carrying ``record`` and, when the record chose a stacked readout, its slices (save
    it to write both into the file)."""
    if record.readout_layers and (readout is None or readout.layers != list(record.readout_layers)):
        raise ConfigError(bad_value("readout", None if readout is None else readout.layers,
                                    f"the readout over blocks {list(record.readout_layers)} the record chose"))
    return dataclasses.replace(vectors, filter_validation=record,
                               readout=dict(readout.weights) if readout is not None else None)
