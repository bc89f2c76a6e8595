"""Training-data filtering by projection difference onto a persona vector (persona spec section 5).

For a chat sample ``(x, y)`` (``x`` = every message before the last assistant turn, ``y`` = that turn), teacher-
forced through the BASE model, ``a(x, y)`` is the mean over response tokens of the residual stream at
``blocks.{layer}``; ``v_hat`` is the unit trait direction. Per sample:

- ``proj_train = a(x, y) . v_hat``;
- ``proj_base`` = the model's own baseline: ``proxy`` (default, no generation): the projection at the last
  prompt token (the token before the response); ``exact``: ``a(x, y') . v_hat`` with ``y'`` the base model's
  greedy answer to ``x`` (``max_new_tokens`` tokens at most); ``raw``: 0 (the response projection alone; kept
  for vectors whose filter validation ranks it best, :mod:`~difflib_models.persona.filtering.validation`);
- ``delta_p = proj_train - proj_base``: how much more trait-like the training response is than what the model
  would say anyway. The data-set score is the mean ``delta_p`` (with a bootstrap 95% CI).

Selection modes: ``report`` (flag nothing), ``threshold`` (flag ``delta_p`` above the ``percentile``-th
percentile of a clean reference set scored the same way; the paper's recipe is the 95th), ``top_k`` and
``top_frac``. Outputs (:func:`write_outputs`): ``scores.jsonl`` (id, trait, layer, proj_train, proj_base,
delta_p, percentile, flagged, method), ``summary.json``, ``kept.jsonl`` (the original lines of the samples not
flagged, byte for byte) and ``flagged.jsonl``. The input file is never modified.

With a STACKED readout (:mod:`~difflib_models.persona.filtering.readout`, chosen by the vector file's filter
validation), ``v_hat`` is a unit vector over a span of blocks and every projection is the sum of the per-block
projections; ``layer`` in the outputs is then the deepest block of the span and the summary lists the span.

Cost: the proxy is one forward per sample that stops right after ``blocks.{layer}`` (later blocks and the LM
head are skipped), so it is cheaper than a bare full forward. ``exact`` adds a greedy generation per sample.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from difflib_models.errors import ConfigError, bad_value
from difflib_models.files import load_jsonl
from difflib_models.hooks import BlockReader, EarlyStop, probe_mode, projection, run_forward
from difflib_models.io import atomic_write_json, atomic_write_text
from difflib_models.models.hookpoints import LAYER_CONVENTION, unwrap_model
from difflib_models.persona.filtering.journal import ScoreJournal
from difflib_models.persona.filtering.readout import Readout, readout_of
from difflib_models.persona.filtering.records import SUMMARY_KEYS, FilterRow, FilterSummary
from difflib_models.persona.traits.chat import (
    EncodedPair,
    encode_prompt_response,
    has_chat_template,
    pad_batch,
    pad_id,
)
from difflib_models.progress import progress
from difflib_models.stats import bootstrap_mean_ci

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("proxy", "exact", "raw")
MODES: tuple[str, ...] = ("report", "threshold", "top_k", "top_frac")

__all__ = [
    "ChatSample", "FilterConfig", "FilterResult", "FilteredDataset", "METHODS", "MODES", "filter_samples",
    "default_method", "project_readout", "read_chat_jsonl", "score_samples", "select", "write_outputs",
]


@dataclass
class FilterConfig:
    """How to score and select. Validated on construction."""

    method: str = "proxy"
    """``proxy`` (last-prompt-token baseline, no generation), ``exact`` (the base model's greedy answer) or
    ``raw`` (no baseline)."""
    mode: str = "report"
    """``report`` | ``threshold`` (needs a reference set, or uses the data itself) | ``top_k`` | ``top_frac``."""
    percentile: float = 95.0
    """Threshold percentile of the reference ``delta_p`` distribution (mode ``threshold``)."""
    top_k: int | None = None
    top_frac: float | None = None
    batch_size: int = 8
    max_length: int = 512
    """Token budget per sample (prompt + response); longer responses are cut, then the prompt's left end."""
    max_new_tokens: int = 48
    """Length of the base model's greedy answer (method ``exact``)."""
    n_bootstrap: int = 1000
    seed: int = 0
    checkpoint_rows: int = 512
    """Rows per saved chunk when :func:`filter_samples` runs with a ``journal`` (a crash loses one chunk at most)."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(bad_value("method", self.method, METHODS, "'proxy' needs no generation."))
        if self.mode not in MODES:
            raise ConfigError(bad_value("mode", self.mode, MODES))
        if not 0.0 < float(self.percentile) < 100.0:
            raise ConfigError(bad_value("percentile", self.percentile, "a number in (0, 100)", "The paper uses 95."))
        if self.mode == "top_k" and (not isinstance(self.top_k, int) or isinstance(self.top_k, bool)
                                     or self.top_k < 1):
            raise ConfigError(bad_value("top_k", self.top_k, "an integer >= 1 with mode='top_k'"))
        if self.mode == "top_frac" and (self.top_frac is None or not 0.0 < float(self.top_frac) <= 1.0):
            raise ConfigError(bad_value("top_frac", self.top_frac, "a fraction in (0, 1] with mode='top_frac'"))
        for name, low in (("batch_size", 1), ("max_length", 8), ("max_new_tokens", 1), ("n_bootstrap", 0),
                          ("checkpoint_rows", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(bad_value(name, value, f"an integer >= {low}"))


@dataclass
class ChatSample:
    """One chat row: ``prompt`` = the messages before the last assistant turn, ``response`` = that turn."""

    id: str
    prompt: list[dict[str, str]]
    response: str
    line: int
    raw: str
    """The original JSONL line (written unchanged to ``kept.jsonl``)."""


def split_last_turn(messages: Any, where: str) -> tuple[list[dict[str, str]], str]:
    """Split ``messages`` at the last assistant turn; ConfigError naming ``where`` when there is none."""
    if not isinstance(messages, list) or not messages:
        raise ConfigError(f"{where}: `messages` must be a non-empty list of {{'role', 'content'}} objects.")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ConfigError(f"{where}: message {i} must be an object with string 'role' and 'content'.")
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        raise ConfigError(
            f"{where} has no assistant turn. HINT: every row needs a response to score, e.g. "
            '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}.'
        )
    prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:last]]
    if not any(m["role"] == "user" for m in prompt):
        raise ConfigError(f"{where}: no user message before the last assistant turn.")
    if not messages[last]["content"].strip():
        raise ConfigError(f"{where}: the last assistant turn is empty.")
    return prompt, messages[last]["content"]


def read_chat_jsonl(path: str | Path) -> list[ChatSample]:
    """Read a chat JSONL file (``{"messages": [...], "id"?: ...}`` per line); errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(bad_value("data", str(path), "an existing JSONL file"))
    samples: list[ChatSample] = []
    for row in load_jsonl(path, what="data"):
        where = f"{path.name} line {row.line}"
        if not isinstance(row.value, dict) or "messages" not in row.value:
            raise ConfigError(f"{where}: expected an object with a `messages` list (chat format).")
        prompt, response = split_last_turn(row.value["messages"], where)
        sid = str(row.value.get("id", f"line-{row.line}"))
        samples.append(ChatSample(id=sid, prompt=prompt, response=response, line=row.line, raw=row.raw))
    if not samples:
        raise ConfigError(bad_value("data", str(path), "a JSONL file with at least one chat row"))
    return samples


def samples_from_rows(rows: Sequence[dict[str, Any]], name: str = "rows") -> list[ChatSample]:
    """ChatSamples from in-memory rows (e.g. :func:`difflib_models.datasets.load_dataset`)."""
    out = []
    for i, row in enumerate(rows):
        prompt, response = split_last_turn(row.get("messages"), f"{name}[{i}]")
        out.append(ChatSample(id=str(row.get("id", f"row-{i}")), prompt=prompt, response=response, line=i + 1,
                              raw=json.dumps(row, ensure_ascii=False)))
    return out


# ---------------------------------------------------------------------------------------------- encoding
def _render_prompt(tokenizer: Any, prompt: list[dict[str, str]]) -> str:
    if has_chat_template(tokenizer):
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return text if isinstance(text, str) else "".join(text)
    parts = [f"{m['role'].capitalize()}: {m['content']}" for m in prompt]
    return "\n".join(parts) + "\nAssistant:"


def encode_sample(tokenizer: Any, sample: ChatSample, max_length: int) -> EncodedPair:
    """Prompt + response ids with the exact split point (single user turns use persona.traits.chat's encoder)."""
    roles = [m["role"] for m in sample.prompt]
    if roles in (["user"], ["system", "user"]):
        system = sample.prompt[0]["content"] if roles[0] == "system" else None
        enc = encode_prompt_response(tokenizer, sample.prompt[-1]["content"], sample.response, system=system)
    else:
        text = _render_prompt(tokenizer, sample.prompt)
        add = not has_chat_template(tokenizer)
        p_ids = list(tokenizer(text, add_special_tokens=add)["input_ids"])
        full = list(tokenizer(text + sample.response, add_special_tokens=add)["input_ids"])
        if full[: len(p_ids)] == p_ids and len(full) > len(p_ids):
            enc = EncodedPair(ids=full, prompt_len=len(p_ids))
        else:
            r_ids = list(tokenizer(sample.response, add_special_tokens=False)["input_ids"])
            enc = EncodedPair(ids=p_ids + r_ids, prompt_len=len(p_ids), merged_boundary=True)
    return _truncate(enc, max_length)


def _truncate(enc: EncodedPair, max_length: int) -> EncodedPair:
    if len(enc.ids) <= max_length:
        return enc
    keep_resp = max(min(enc.response_len, max_length // 2), max_length - enc.prompt_len)
    keep_prompt = max_length - keep_resp
    ids = enc.ids[enc.prompt_len - keep_prompt : enc.prompt_len + keep_resp]
    return EncodedPair(ids=ids, prompt_len=keep_prompt, merged_boundary=enc.merged_boundary)


# ---------------------------------------------------------------------------------------------- scoring
@torch.no_grad()
def project_pairs(
    model: nn.Module,
    pairs: Sequence[EncodedPair],
    layer: int,
    unit: torch.Tensor,
    *,
    pad_token_id: int,
    batch_size: int = 8,
    desc: str = "projecting",
) -> tuple[np.ndarray, np.ndarray]:
    """For each pair: (mean response-token projection, last-prompt-token projection) on ``unit`` (normalised) at
    ``blocks.{layer}`` (:func:`project_readout` with one block)."""
    return project_readout(model, pairs, Readout.single(layer, unit), pad_token_id=pad_token_id,
                           batch_size=batch_size, desc=desc)


@torch.no_grad()
def project_readout(
    model: nn.Module,
    pairs: Sequence[EncodedPair],
    readout: Readout,
    *,
    pad_token_id: int,
    batch_size: int = 8,
    desc: str = "projecting",
) -> tuple[np.ndarray, np.ndarray]:
    """For each pair: (mean response-token projection, last-prompt-token projection) on ``readout`` (summed over
    its blocks). One forward per batch (right padding, batches grouped by length), ended after the deepest block
    where ``hooks.can_stop_early`` allows (not under FSDP). Eval mode and no grad (``hooks.probe_mode``)."""
    device = next(model.parameters()).device
    layers = readout.layers
    matrix = readout.matrix().to(device=device, dtype=torch.float32)  # [k, d]
    resp = np.zeros(len(pairs))
    last = np.zeros(len(pairs))
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i].ids))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    root = unwrap_model(model)
    stop = EarlyStop.decide(model)
    # every block projects on every slice ([B, T, k]); block j keeps its own column j
    with probe_mode(model), BlockReader(model, layers, projection(matrix.T), early_stop=stop) as reader:
        for idx in progress(batches, desc=desc, total=len(batches), unit="batch"):
            ids, mask = pad_batch([pairs[i].ids for i in idx], pad_token_id=pad_token_id, padding_side="right")
            run_forward(root, input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
            taken = reader.take()
            proj = sum(taken[layer][..., j] for j, layer in enumerate(layers))  # [B, T]
            if not bool(torch.isfinite(proj).all()):
                raise ConfigError(f"non-finite activations at {readout.label} for samples {idx}")
            for row, i in enumerate(idx):
                p, n = pairs[i].prompt_len, len(pairs[i].ids)
                resp[i] = float(proj[row, p:n].mean())
                last[i] = float(proj[row, p - 1])
    return resp, last


@torch.no_grad()
def greedy_answers(
    model: nn.Module, tokenizer: Any, prompts: Sequence[list[int]], *, max_new_tokens: int, batch_size: int = 8,
) -> list[list[int]]:
    """The model's greedy answer ids to each prompt (left-padded batches; cut after the first EOS, kept)."""
    device = next(model.parameters()).device
    pad = pad_id(tokenizer)
    eos = getattr(tokenizer, "eos_token_id", None)
    eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
    out: list[list[int]] = [[] for _ in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    with probe_mode(model):
        for idx in progress(batches, desc="greedy answers", total=len(batches), unit="batch"):
            ids, mask = pad_batch([prompts[i] for i in idx], pad_token_id=pad, padding_side="left")
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad)
            for row, i in enumerate(idx):
                toks = gen[row, ids.shape[1] :].tolist()
                cut = next((k for k, t in enumerate(toks) if t in eos_ids), None)
                out[i] = toks[: cut + 1] if cut is not None else toks
    return out


@dataclass
class Scores:
    proj_train: np.ndarray
    proj_base: np.ndarray
    seconds: float

    @property
    def delta_p(self) -> np.ndarray:
        return self.proj_train - self.proj_base


def score_samples(
    model: nn.Module, tokenizer: Any, samples: Sequence[ChatSample], readout: Readout, config: FilterConfig, *,
    journal: ScoreJournal | None = None,
) -> Scores:
    """``proj_train`` and ``proj_base`` per sample on ``readout`` (``Readout.single(layer, unit)`` for one block;
    ``model`` must be the base model). With a ``journal``, rows it holds are read back and the rest are scored
    ``config.checkpoint_rows`` at a time, each chunk saved."""
    t0 = time.perf_counter()
    pairs = [encode_sample(tokenizer, s, config.max_length) for s in samples]

    def run(chunk: list[EncodedPair], label: str = "") -> tuple[np.ndarray, np.ndarray]:
        return _score_pairs(model, tokenizer, chunk, readout, config, label)

    proj_train, proj_base = run(pairs) if journal is None else journal.score(pairs, run, config.checkpoint_rows)
    return Scores(proj_train=proj_train, proj_base=proj_base, seconds=time.perf_counter() - t0)


def _score_pairs(model: nn.Module, tokenizer: Any, pairs: Sequence[EncodedPair], readout: Readout,
                 config: FilterConfig, label: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(proj_train, proj_base) of encoded rows, by ``config.method``."""
    pad = pad_id(tokenizer)
    suffix = f" ({label})" if label else ""
    proj_train, proj_last = project_readout(model, pairs, readout, pad_token_id=pad,
                                            batch_size=config.batch_size, desc=f"{config.method} filter{suffix}")
    if config.method == "proxy":
        proj_base = proj_last
    elif config.method == "raw":
        proj_base = np.zeros_like(proj_train)
    else:
        prompts = [p.ids[: p.prompt_len] for p in pairs]
        answers = greedy_answers(model, tokenizer, prompts, max_new_tokens=config.max_new_tokens,
                                 batch_size=config.batch_size)
        own = [EncodedPair(ids=pr + (ans or [pad]), prompt_len=len(pr)) for pr, ans in zip(prompts, answers,
                                                                                          strict=True)]
        proj_base, _ = project_readout(model, own, readout, pad_token_id=pad, batch_size=config.batch_size,
                                       desc=f"base answers{suffix}")
    return proj_train, proj_base


# ---------------------------------------------------------------------------------------------- selection
def percentile_of(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Percent of ``reference`` values <= each value (0-100)."""
    ref = np.sort(np.asarray(reference, dtype=float))
    return 100.0 * np.searchsorted(ref, np.asarray(values, dtype=float), side="right") / len(ref)


def select(delta: np.ndarray, config: FilterConfig, reference: np.ndarray | None = None) -> tuple[np.ndarray,
                                                                                               float | None, str]:
    """Flag samples: returns ``(flagged bool[N], threshold or None, threshold_source)``."""
    n = len(delta)
    flagged = np.zeros(n, dtype=bool)
    if config.mode == "report":
        return flagged, None, "none"
    if config.mode == "threshold":
        source = "reference" if reference is not None and len(reference) else "self"
        if source == "self":
            log.warning("threshold mode without a reference set: using the data's own %.0fth percentile",
                        config.percentile)
        base = reference if source == "reference" else delta
        thr = float(np.percentile(base, config.percentile))
        return delta > thr, thr, source
    k = config.top_k if config.mode == "top_k" else int(math.ceil(float(config.top_frac or 0) * n))
    k = min(int(k or 0), n)
    top = np.argsort(-delta, kind="stable")[:k]
    flagged[top] = True
    thr = float(delta[top[-1]]) if k else None
    return flagged, thr, config.mode


def bootstrap_ci(values: np.ndarray, n_boot: int, seed: int) -> tuple[float | None, float | None]:
    """95% percentile bootstrap CI of the mean (:func:`difflib_models.stats.bootstrap_mean_ci`); None, None for
    fewer than two values or ``n_boot`` 0."""
    if len(values) < 2 or n_boot == 0:
        return None, None
    return bootstrap_mean_ci(values, n_boot=n_boot, seed=seed, level=0.95)


@dataclass
class FilterResult:
    """Per-sample scores, the selection and a summary (see :func:`write_outputs`)."""

    samples: list[ChatSample]
    records: tuple[FilterRow, ...]
    """One scored row per sample (``scores.jsonl``)."""
    summary: FilterSummary
    """The run's summary (``summary.json`` without its ``source`` and ``outputs``)."""
    flagged: np.ndarray = field(repr=False)

    @property
    def kept_indices(self) -> list[int]:
        return [i for i, f in enumerate(self.flagged) if not f]


def default_layer(vectors: Any) -> int | None:
    """The layer the filter reads by default: the file's filter-validated layer, else its selected layer."""
    record = getattr(vectors, "filter_validation", None)
    if record is not None:
        return int(record.filter_layer)
    return vectors.selected_layer


def default_method(vectors: Any) -> str:
    """The scoring method the filter uses by default: the file's filter-validated method, else ``proxy``."""
    record = getattr(vectors, "filter_validation", None)
    return str(record.method) if record is not None and record.method in METHODS else "proxy"


def _validation_summary(vectors: Any, readout: Readout, method: str) -> dict[str, Any] | None:
    record = getattr(vectors, "filter_validation", None)
    if record is None:
        return None
    validated = list(record.readout_layers) or [record.filter_layer]
    return dict(record.to_dict(), validated_layer=readout.layers == validated, validated_method=method == record.method)


def filter_samples(
    loaded: Any,
    vectors: Any,
    samples: Sequence[ChatSample],
    config: FilterConfig | None = None,
    *,
    layer: int | None = None,
    reference: Sequence[ChatSample] | None = None,
    journal: str | Path | None = None,
) -> FilterResult:
    """Score ``samples`` with the persona ``vectors`` (a PersonaVectorSet) through the BASE model of ``loaded``
    (a LoadedModel; a peft model is scored with its adapter disabled), and select per ``config``. ``journal``: a
    directory where finished chunks of scores are saved, so a re-run after a crash scores only the rest
    (:mod:`~difflib_models.persona.filtering.journal`)."""
    config = config or FilterConfig()
    if not samples:
        raise ConfigError(bad_value("samples", [], "at least one chat sample"))
    readout = readout_of(vectors, layer)
    layer = readout.deepest
    d_model = int(loaded.d_model)
    if readout.d_model != d_model:
        raise ConfigError(bad_value("vectors", f"d_model {readout.d_model}", f"d_model {d_model} of the model",
                                    "The vector file belongs to another model."))

    def run(items: Sequence[ChatSample], side: str) -> Scores:
        book = None if journal is None else ScoreJournal(journal, {
            "model": loaded.identity.weight_hash, "adapter": getattr(loaded.identity, "adapter_hash", None),
            "unit": readout.fingerprint(), "layer": layer if not readout.stacked else readout.layers,
            "method": config.method, "max_new_tokens": config.max_new_tokens, "side": side})
        if loaded.is_peft:
            with loaded.base_view() as base:
                return score_samples(base, loaded.tokenizer, items, readout, config, journal=book)
        return score_samples(loaded.model, loaded.tokenizer, items, readout, config, journal=book)

    scores = run(samples, "samples")
    delta = scores.delta_p
    ref_delta = run(reference, "reference").delta_p if reference else None
    flagged, thr, source = select(delta, config, ref_delta)
    pct = percentile_of(delta, ref_delta if ref_delta is not None else delta)
    records = tuple(
        FilterRow(id=s.id, line=s.line, trait=vectors.trait_id, layer=layer,
                  proj_train=float(scores.proj_train[i]), proj_base=float(scores.proj_base[i]),
                  delta_p=float(delta[i]), percentile=float(pct[i]), flagged=bool(flagged[i]), method=config.method)
        for i, s in enumerate(samples)
    )
    lo, hi = bootstrap_ci(delta, config.n_bootstrap, config.seed)
    summary = FilterSummary(
        trait=vectors.trait_id, layer=layer, layer_convention=LAYER_CONVENTION, method=config.method,
        mode=config.mode, n=len(samples), n_flagged=int(flagged.sum()), n_kept=int((~flagged).sum()),
        mean_delta_p=float(delta.mean()), ci95=(lo, hi),
        std_delta_p=float(delta.std(ddof=1)) if len(delta) > 1 else None,
        mean_proj_train=float(scores.proj_train.mean()), mean_proj_base=float(scores.proj_base.mean()),
        threshold=thr, threshold_source=source,
        percentile=config.percentile if config.mode == "threshold" else None,
        reference=None if ref_delta is None else {
            "n": len(ref_delta), "mean_delta_p": float(ref_delta.mean()),
            f"p{config.percentile:g}": float(np.percentile(ref_delta, config.percentile))},
        vector_model_weight_hash=vectors.weight_hash, seconds=scores.seconds,
        extra={"model": loaded.identity.to_dict() if hasattr(loaded.identity, "to_dict") else None,
               "filter_validation": _validation_summary(vectors, readout, config.method),
               "readout": readout.to_dict(),
               "config": asdict(config)},
        keys=SUMMARY_KEYS,
    )
    return FilterResult(samples=list(samples), records=records, summary=summary, flagged=flagged)


def write_outputs(result: FilterResult, out_dir: str | Path, *, source: str | Path | None = None) -> dict[str, Path]:
    """Write ``scores.jsonl``, ``summary.json``, ``kept.jsonl`` and ``flagged.jsonl`` into ``out_dir``
    (atomically). Refuses to write over ``source`` (the original data is never modified)."""
    out = Path(out_dir)
    paths = {name: out / f"{name}.{ext}" for name, ext in
             (("scores", "jsonl"), ("summary", "json"), ("kept", "jsonl"), ("flagged", "jsonl"))}
    if source is not None and Path(source).resolve() in {p.resolve() for p in paths.values()}:
        raise ConfigError(bad_value("out", str(out), "a directory that does not hold the input file",
                                    "Original data is never modified; choose another --out."))
    lines = lambda rows: "".join(r + "\n" for r in rows)  # noqa: E731
    atomic_write_text(paths["scores"], lines(json.dumps(r.to_dict()) for r in result.records))
    atomic_write_text(paths["kept"], lines(s.raw for s, f in zip(result.samples, result.flagged, strict=True)
                                           if not f))
    atomic_write_text(paths["flagged"], lines(s.raw for s, f in zip(result.samples, result.flagged, strict=True)
                                              if f))
    summary = result.summary.with_outputs(str(source) if source else None, {k: str(v) for k, v in paths.items()})
    atomic_write_json(paths["summary"], summary.to_dict())
    return paths


class FilteredDataset(torch.utils.data.Dataset):
    """Map-style dataset over the kept rows of a filtered chat set (for training on the kept subset).

    ``FilteredDataset(rows, flagged)`` keeps ``rows[i]`` where ``flagged[i]`` is false;
    ``FilteredDataset.from_dir(out_dir)`` reads ``kept.jsonl``. ``transform`` (e.g. a tokenizer call) is
    applied per item. ``indices`` are positions in the original data.
    """

    def __init__(self, rows: Sequence[dict[str, Any]], flagged: Sequence[bool] | None = None, *,
                 transform: Callable[[dict[str, Any]], Any] | None = None) -> None:
        if flagged is not None and len(flagged) != len(rows):
            raise ConfigError(bad_value("flagged", f"{len(flagged)} values", f"{len(rows)} (one per row)"))
        self.indices = [i for i in range(len(rows)) if flagged is None or not flagged[i]]
        self.rows = [rows[i] for i in self.indices]
        self.transform = transform

    @classmethod
    def from_dir(cls, out_dir: str | Path, *, transform: Callable[[dict[str, Any]], Any] | None = None
                 ) -> FilteredDataset:
        path = Path(out_dir) / "kept.jsonl"
        if not path.is_file():
            raise ConfigError(bad_value("out_dir", str(out_dir), "a filter output directory with kept.jsonl"))
        rows = [row.value for row in load_jsonl(path, what="out_dir")]
        return cls(rows, transform=transform)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Any:
        row = self.rows[i]
        return self.transform(row) if self.transform is not None else row
