"""Training-data filtering by projection difference onto a persona vector (``scoring``; its typed rows and summary
in ``records``), and the check that a vector is good for filtering: matching vs other responses to the same prompt
(``validation``); the readout the filter reads, one block or a stacked span of blocks (``readout``)."""

from __future__ import annotations

from difflib_models.persona.filtering.readout import Readout, fit_stacked, readout_of
from difflib_models.persona.filtering.records import FilterRow, FilterSummary
from difflib_models.persona.filtering.scoring import (
    METHODS,
    MODES,
    ChatSample,
    FilterConfig,
    FilteredDataset,
    FilterResult,
    filter_samples,
    read_chat_jsonl,
    score_samples,
    select,
    write_outputs,
)
from difflib_models.persona.filtering.validation import (
    LOW_AUROC,
    SCORE_METHODS,
    PairFeatures,
    ResponsePair,
    collect_features,
    describe,
    filter_validate_trait,
    pair_scores,
    pairs_from_ab,
    pairs_from_trait,
    random_direction_baseline,
    rank_metrics,
    readout_scores,
    split_pairs,
    validate_for_filtering,
    validate_on_trait,
    validate_with_readouts,
    with_filter_validation,
)

__all__ = [
    "ChatSample",
    "FilterConfig",
    "FilterResult",
    "FilterRow",
    "FilterSummary",
    "FilteredDataset",
    "LOW_AUROC",
    "METHODS",
    "MODES",
    "PairFeatures",
    "Readout",
    "ResponsePair",
    "SCORE_METHODS",
    "collect_features",
    "describe",
    "filter_samples",
    "filter_validate_trait",
    "fit_stacked",
    "pair_scores",
    "pairs_from_ab",
    "pairs_from_trait",
    "random_direction_baseline",
    "rank_metrics",
    "read_chat_jsonl",
    "readout_of",
    "readout_scores",
    "score_samples",
    "select",
    "split_pairs",
    "validate_for_filtering",
    "validate_on_trait",
    "validate_with_readouts",
    "with_filter_validation",
    "write_outputs",
]
