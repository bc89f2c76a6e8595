"""Persona-vector extraction, scikit-learn style: configure, ``fit(loaded, trait)``, read learned attributes.

Modes (spec persona.md section 2; all layers are read in ONE forward per batch, float32):

- ``"ab"`` (CAA answer-token contrast; no judge, no generation): teacher-force the chat-templated question + the
  matching answer, and again + the non-matching answer; read the residual at the first token where the two answers
  differ (the letter of ``"(A)"`` / ``"(B)"``, or ``Yes`` / ``No``).
- ``"prompt_contrast"`` (RepE): pos = question under the pos instruction (system prompt), neg = the same question
  under the neg instruction, with an optional shared assistant prefix; read the last real token.
- ``"paired"`` (Soligo et al.): trait vs neutral responses teacher-forced under a neutral prompt; average over
  response tokens.
- ``"generate_judge"`` (the paper's method): generate under pos/neg instructions, keep pos answers a judge scores
  above ``judge_threshold`` and neg answers below it (coherence >= ``coherence_min``), average over response tokens.
  The judge is any callable ``judge(question, answer) -> score | (score, coherence)`` on a 0-100 scale; see
  :class:`OpenAICompatibleJudge` for an optional HTTP adapter.

Aggregators: ``"mean_diff"`` (default), ``"pca"`` (first principal component of the uncentred paired differences, sign fixed by
majority, scaled to the mean difference's projection) and ``"logistic"`` (scikit-learn; the unit normal scaled the
same way) and ``"pair_logistic"`` (aligned pairs only: an L2 logistic regression on the sign-augmented pair differences,
C chosen by a grouped CV on the extraction pairs; :mod:`~difflib_models.persona.extraction.pair_logistic`; it
ignores what a prompt adds to both of its answers). Learned attributes: ``layers_``, ``vectors_``, ``norms_``, ``n_pos_``, ``n_neg_``, ``gap_`` (pos-vs-neg
gap of last-prompt projections per layer, used as g in shift_frac; measured on the extraction questions
under the instruction pairs, each question under one pair in rotation, or on the mode's own features when the
trait has no instructions), ``base_std_`` (std of the per-prompt
last-prompt projections of the evaluation questions without a system prompt: sigma_0 of the monitor),
``pos_features_`` / ``neg_features_`` (extraction features, for split-half stability).
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from difflib_models.errors import ConfigError, bad_value
from difflib_models.hooks import probe_mode
from difflib_models.models.hookpoints import parse_layers
from difflib_models.models.identity import ModelIdentity
from difflib_models.persona.contracts import TraitFeatures, ValidationSummary
from difflib_models.persona.extraction.vectors import PersonaVectorSet
from difflib_models.persona.shift.core import probe_activations, read_residuals
from difflib_models.persona.traits import Trait, chat, load_trait
from difflib_models.progress import progress

log = logging.getLogger(__name__)

MODES = ("ab", "prompt_contrast", "paired", "generate_judge")
AGGREGATORS = ("mean_diff", "pca", "logistic", "pair_logistic")
Judge = Callable[[str, str], Any]


@dataclass(frozen=True)
class _Sample:
    ids: list[int]
    index: int | None = None  # column to read (right padding), or None -> mean over [start:]
    start: int = 0


class PersonaExtractor:
    """Extract one trait direction per layer from a model (see the module docstring)."""

    def __init__(
        self,
        mode: str = "ab",
        aggregator: str = "mean_diff",
        layers: str | Sequence[int] = "all",
        *,
        batch_size: int = 8,
        max_length: int = 512,
        assistant_prefix: str | None = None,
        judge: Judge | None = None,
        judge_threshold: float = 50.0,
        coherence_min: float = 50.0,
        max_new_tokens: int = 48,
        show_progress: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(bad_value("mode", mode, MODES, "'ab' and 'prompt_contrast' need no judge."))
        if aggregator not in AGGREGATORS:
            raise ConfigError(bad_value("aggregator", aggregator, AGGREGATORS))
        if mode == "generate_judge" and judge is None:
            raise ConfigError(bad_value("judge", None, "a callable judge(question, answer) -> score 0-100",
                                        "mode='generate_judge' needs a judge; use mode='ab' or 'prompt_contrast' "
                                        "for judge-free extraction."))
        if mode == "generate_judge" and aggregator in ("pca", "pair_logistic"):
            raise ConfigError(bad_value("aggregator", aggregator, ["mean_diff", "logistic"],
                                        f"generate_judge yields unpaired samples; {aggregator} needs aligned pairs."))
        for name, value in (("batch_size", batch_size), ("max_length", max_length), ("max_new_tokens", max_new_tokens)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(bad_value(name, value, "an integer >= 1"))
        self.mode = mode
        self.aggregator = aggregator
        self.layers = layers
        self.batch_size = batch_size
        self.max_length = max_length
        self.assistant_prefix = assistant_prefix
        self.judge = judge
        self.judge_threshold = judge_threshold
        self.coherence_min = coherence_min
        self.max_new_tokens = max_new_tokens
        self.show_progress = show_progress

    # ------------------------------------------------------------------ fitting
    def fit(self, loaded: Any, trait: Trait | str, *,
            probe_acts: dict[int, torch.Tensor] | None = None) -> PersonaExtractor:
        """Learn ``vectors_`` etc. from the trait's extraction split; returns self.

        ``probe_acts`` ({layer: [P, d]}): the last-prompt residuals of the trait's evaluation questions on this
        model, when the caller has read them already (the gate's probe pass); sigma_0 is then taken from them
        instead of a second probe forward."""
        trait = load_trait(trait)
        self.trait_ = trait
        self.layers_ = parse_layers(self.layers, loaded.n_layers)
        pos, neg = self.features(loaded, trait, "extraction")
        self.pos_features_, self.neg_features_ = pos, neg
        self.n_pos_ = int(next(iter(pos.values())).shape[0])
        self.n_neg_ = int(next(iter(neg.values())).shape[0])
        if self.n_pos_ < 1 or self.n_neg_ < 1:
            raise ConfigError(f"trait {trait.id!r}: extraction kept {self.n_pos_} pos / {self.n_neg_} neg samples. "
                              "HINT: with generate_judge, relax judge_threshold or use mode='ab'.")
        self.vectors_ = {layer: aggregate(pos[layer], neg[layer], self.aggregator) for layer in self.layers_}
        self.norms_ = {layer: float(v.norm()) for layer, v in self.vectors_.items()}
        self.gap_, self.gap_source_ = self._gap(loaded, trait)
        self.base_std_ = self._base_std(loaded, trait, probe_acts)
        self.model_identity_ = _identity(loaded)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "vectors_"):
            raise ConfigError("this PersonaExtractor is not fitted yet. HINT: call fit(loaded, trait) first.")

    def unit(self, layer: int) -> torch.Tensor:
        self._check_fitted()
        v = self.vectors_[layer]
        return v / v.norm().clamp_min(1e-12)

    def _gap(self, loaded: Any, trait: Trait) -> tuple[dict[int, float], str]:
        """g = mean pos - mean neg of last-prompt projections (instruction contrast when the trait has it)."""
        if self.mode == "prompt_contrast":
            pos, neg, source = self.pos_features_, self.neg_features_, "prompt_contrast_last_token"
        elif trait.instructions:
            pos, neg = self._collect(loaded, self._prompt_contrast_samples(loaded.tokenizer, trait, "extraction",
                                                                           prefix=None, rotate=True), "gap")
            source = "prompt_contrast_last_token"
        else:
            pos, neg, source = self.pos_features_, self.neg_features_, f"{self.mode}_features"
        self._gap_features = (pos, neg)
        return self._gap_from(pos, neg), source

    def _gap_from(self, pos: dict[int, torch.Tensor], neg: dict[int, torch.Tensor]) -> dict[int, float]:
        return {layer: float((pos[layer] @ self.unit(layer)).mean() - (neg[layer] @ self.unit(layer)).mean())
                for layer in self.layers_}

    def _base_std(self, loaded: Any, trait: Trait, acts: dict[int, torch.Tensor] | None = None) -> dict[int, float]:
        if acts is None or any(layer not in acts for layer in self.layers_):
            acts = probe_activations(loaded.model, loaded.tokenizer, trait.split_questions("evaluation"),
                                     self.layers_, batch_size=self.batch_size)
        self._probe_acts = acts
        return self._base_std_from(acts)

    def _base_std_from(self, acts: dict[int, torch.Tensor]) -> dict[int, float]:
        return {layer: float((acts[layer] @ self.unit(layer)).std()) for layer in self.layers_}

    def with_aggregator(self, aggregator: str) -> PersonaExtractor:
        """A fitted copy whose directions come from ``aggregator`` on THIS extractor's extraction features (no
        forward pass: the gap and sigma_0 are re-read from the stored last-prompt features). ConfigError as
        :meth:`__init__` for an unknown aggregator or one this mode cannot feed."""
        self._check_fitted()
        other = PersonaExtractor(mode=self.mode, aggregator=aggregator, layers=self.layers,
                                 batch_size=self.batch_size, max_length=self.max_length,
                                 assistant_prefix=self.assistant_prefix, judge=self.judge,
                                 judge_threshold=self.judge_threshold, coherence_min=self.coherence_min,
                                 max_new_tokens=self.max_new_tokens, show_progress=self.show_progress)
        other.__dict__.update({k: v for k, v in self.__dict__.items() if k.endswith("_")})
        other._gap_features, other._probe_acts = self._gap_features, self._probe_acts
        pos, neg = self.pos_features_, self.neg_features_
        other.vectors_ = {layer: aggregate(pos[layer], neg[layer], aggregator) for layer in self.layers_}
        other.norms_ = {layer: float(v.norm()) for layer, v in other.vectors_.items()}
        other.gap_ = other._gap_from(*self._gap_features)
        other.base_std_ = other._base_std_from(self._probe_acts)
        return other

    def to_vector_set(
        self, *, selected_layer: int | None = None, selection_reason: str | None = None,
        validation: ValidationSummary | None = None,
    ) -> PersonaVectorSet:
        """Package the fitted vectors as a :class:`PersonaVectorSet` (model identity, trait hash, counts, ...)."""
        self._check_fitted()
        return PersonaVectorSet(
            trait_id=self.trait_.id, trait_hash=self.trait_.hash, polarity=self.trait_.polarity,
            vectors=dict(self.vectors_), model=self.model_identity_, mode=self.mode, aggregator=self.aggregator,
            n_pos=self.n_pos_, n_neg=self.n_neg_, gap=dict(self.gap_), base_std=dict(self.base_std_),
            selected_layer=selected_layer, selection_reason=selection_reason, validation=validation,
            gap_source=self.gap_source_, assistant_prefix=self.assistant_prefix,
        )

    # ------------------------------------------------------------------ features
    def trait_features(self, loaded: Any, trait: Trait | str, *,
                       evaluation: tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]] | None = None
                       ) -> TraitFeatures:
        """The :class:`TraitFeatures` validation reads: the extraction features (the fitted ones when this
        extractor is fitted on ``trait``, else read now; the extractor is never fitted here) and the evaluation
        features (``evaluation`` when the caller has them, e.g. from held-out instruction pairs)."""
        trait = load_trait(trait)
        fitted = hasattr(self, "pos_features_") and (self.trait_ is trait or self.trait_.hash == trait.hash)
        pos, neg = (self.pos_features_, self.neg_features_) if fitted else self.features(loaded, trait, "extraction")
        ev_pos, ev_neg = evaluation if evaluation is not None else self.features(loaded, trait, "evaluation")
        return TraitFeatures(extraction_pos=pos, extraction_neg=neg, evaluation_pos=ev_pos, evaluation_neg=ev_neg)

    def features(self, loaded: Any, trait: Trait | str, split: str) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        """(pos, neg) features {layer: [n, d]} of one split, for this extractor's mode and layers."""
        trait = load_trait(trait)
        if not hasattr(self, "layers_"):
            self.layers_ = parse_layers(self.layers, loaded.n_layers)
        tok = loaded.tokenizer
        if self.mode == "ab":
            samples = self._ab_samples(tok, trait, split)
        elif self.mode == "prompt_contrast":
            samples = self._prompt_contrast_samples(tok, trait, split, prefix=self.assistant_prefix)
        elif self.mode == "paired":
            samples = self._paired_samples(tok, trait, split)
        else:
            samples = self._generate_judge_samples(loaded, trait, split)
        return self._collect(loaded, samples, f"{trait.id}/{split}")

    def _ab_samples(self, tok: Any, trait: Trait, split: str) -> tuple[list[_Sample], list[_Sample]]:
        items = trait.split_ab(split)
        if not items:
            raise ConfigError(bad_value("mode", "ab", "a trait with ab_items",
                                        f"Trait {trait.id!r} has no A/B items; use mode='prompt_contrast'."))
        pos, neg = [], []
        for it in items:
            ctx, _, _ = chat.answer_token_ids(tok, it.question, it.matching, it.not_matching)
            for answer, out in ((it.matching, pos), (it.not_matching, neg)):
                enc = chat.encode_prompt_response(tok, it.question, answer)
                out.append(_Sample(ids=enc.ids, index=len(ctx.ids)))  # the first differing answer token
        return pos, neg

    def _prompt_contrast_samples(self, tok: Any, trait: Trait, split: str, *, prefix: str | None,
                                 rotate: bool = False) -> tuple[list[_Sample], list[_Sample]]:
        """Every question under every instruction pair (``rotate``: question i under pair i mod n only)."""
        if not trait.instructions:
            raise ConfigError(bad_value("mode", "prompt_contrast", "a trait with instructions (pos/neg pairs)",
                                        f"Trait {trait.id!r} has none; use mode='ab'."))
        pos, neg = [], []
        n_ins = len(trait.instructions)
        for qi, q in enumerate(trait.split_questions(split)):
            for ins in (trait.instructions[qi % n_ins],) if rotate else trait.instructions:
                for system, out in ((ins.pos, pos), (ins.neg, neg)):
                    enc = (chat.encode_prompt_response(tok, q, prefix, system=system) if prefix
                           else chat.encode_prompt(tok, q, system=system))
                    out.append(_Sample(ids=enc.ids, index=len(enc.ids) - 1))
        return pos, neg

    def _paired_samples(self, tok: Any, trait: Trait, split: str) -> tuple[list[_Sample], list[_Sample]]:
        items = trait.split_paired(split)
        if not items:
            raise ConfigError(bad_value("mode", "paired", "a trait with paired_responses",
                                        f"Trait {trait.id!r} has none; use mode='ab' or 'prompt_contrast'."))
        pos, neg = [], []
        for it in items:
            for resp, out in ((it.trait, pos), (it.neutral, neg)):
                enc = chat.encode_prompt_response(tok, it.prompt, resp)
                out.append(_Sample(ids=enc.ids, start=enc.prompt_len))
        return pos, neg

    def _generate_judge_samples(self, loaded: Any, trait: Trait, split: str) -> tuple[list[_Sample], list[_Sample]]:
        if not trait.instructions:
            raise ConfigError(bad_value("mode", "generate_judge", "a trait with instructions"))
        tok, model = loaded.tokenizer, loaded.model
        pos, neg = [], []
        jobs = [(q, ins) for q in trait.split_questions(split) for ins in trait.instructions]
        for q, ins in progress(jobs, desc=f"generate+judge {trait.id}", total=len(jobs)):
            for system, out, keep in ((ins.pos, pos, lambda s: s > self.judge_threshold),
                                      (ins.neg, neg, lambda s: s < self.judge_threshold)):
                prompt = chat.encode_prompt(tok, q, system=system)
                answer = _generate(model, tok, prompt.ids, self.max_new_tokens)
                if not answer.strip():
                    continue
                score, coherence = _judge_scores(self.judge, q, answer)
                if keep(score) and coherence >= self.coherence_min:
                    enc = chat.encode_prompt_response(tok, q, answer, system=system)
                    out.append(_Sample(ids=enc.ids, start=enc.prompt_len))
        log.info("generate_judge %s/%s kept %d pos, %d neg of %d each", trait.id, split, len(pos), len(neg), len(jobs))
        if not pos or not neg:
            raise ConfigError(f"trait {trait.id!r}: the judge kept {len(pos)} pos / {len(neg)} neg answers. HINT: "
                              "small models barely follow persona prompts; use mode='ab' or 'prompt_contrast'.")
        return pos, neg

    def _collect(self, loaded: Any, samples: tuple[list[_Sample], list[_Sample]], desc: str
                 ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        out = []
        for group in samples:
            chunks: dict[int, list[torch.Tensor]] = {layer: [] for layer in self.layers_}
            batches = range(0, len(group), self.batch_size)
            for start in progress(batches, desc=f"extract {desc}", total=len(batches)) if self.show_progress else batches:
                part = group[start : start + self.batch_size]
                for s in part:
                    if len(s.ids) > self.max_length:
                        raise ConfigError(bad_value("max_length", self.max_length, f">= {len(s.ids)}",
                                                    "A sample is longer than max_length; raise it."))
                ids, mask = chat.pad_batch([s.ids for s in part], pad_token_id=chat.pad_id(loaded.tokenizer),
                                           padding_side="right")
                if part[0].index is not None:
                    acts = read_residuals(loaded.model, ids, mask, self.layers_,
                                          index=torch.tensor([s.index for s in part]))
                else:
                    acts = read_residuals(loaded.model, ids, mask, self.layers_,
                                          token_mask=chat.response_mask(mask, [s.start for s in part]))
                for layer, t in acts.items():
                    chunks[layer].append(t)
            out.append({layer: torch.cat(ts) for layer, ts in chunks.items()})
        return out[0], out[1]


# ---------------------------------------------------------------------- aggregation
def logistic_normal(pos: torch.Tensor, neg: torch.Tensor, *, c: float = 1.0, max_iter: int = 2000) -> torch.Tensor:
    """Normal of an L2 logistic regression (scikit-learn, inverse strength ``c``, with an intercept) of ``pos``
    [n, d] rows against ``neg`` [m, d] rows on standardised features, mapped back to the raw activation space
    (float64 [d], pointing toward ``pos``; not normalised)."""
    from sklearn.linear_model import LogisticRegression

    x = torch.cat([pos, neg]).double()
    mu, sd = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
    y = [1] * pos.shape[0] + [0] * neg.shape[0]
    clf = LogisticRegression(C=c, max_iter=max_iter).fit(((x - mu) / sd).numpy(), y)
    return torch.as_tensor(clf.coef_[0], dtype=torch.float64) / sd


def aggregate(pos: torch.Tensor, neg: torch.Tensor, aggregator: str = "mean_diff") -> torch.Tensor:
    """One direction [d] from pos [n, d] and neg [m, d]; pointing from neg to pos. ``pca`` and ``pair_logistic``
    need aligned pairs (n == m, row i of each from the same prompt): ConfigError naming ``aggregator`` otherwise."""
    if aggregator == "pair_logistic":
        from difflib_models.persona.extraction.pair_logistic import check_pairs

        check_pairs(pos, neg)
    diff = pos.double().mean(dim=0) - neg.double().mean(dim=0)
    if aggregator == "mean_diff":
        return diff.float()
    if aggregator == "pca":
        if pos.shape != neg.shape:
            raise ConfigError(bad_value("aggregator", "pca", "paired samples (same count of pos and neg)"))
        d = (pos - neg).double()
        # uncentred: centring would subtract exactly the shared pos-neg offset the direction is made of
        _, _, vh = torch.linalg.svd(d, full_matrices=False)
        u = vh[0]
        if int(((d @ u) > 0).sum()) < d.shape[0] / 2:  # sign by majority of the paired differences
            u = -u
        return (u * (diff @ u)).float()
    if aggregator == "logistic":
        u = logistic_normal(pos, neg, max_iter=2000)
        u = u / u.norm()
        return (u * (diff @ u)).float()
    if aggregator == "pair_logistic":
        from difflib_models.persona.extraction.pair_logistic import pair_logistic

        return pair_logistic(pos, neg)
    raise ConfigError(bad_value("aggregator", aggregator, AGGREGATORS))


# ---------------------------------------------------------------------- generation and judges
def _generate(model: Any, tok: Any, prompt_ids: list[int], max_new_tokens: int) -> str:
    ids = torch.tensor([prompt_ids], device=next(model.parameters()).device)
    with probe_mode(model):
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=chat.pad_id(tok))
    return tok.decode(out[0, len(prompt_ids):], skip_special_tokens=True)


def _judge_scores(judge: Judge | None, question: str, answer: str) -> tuple[float, float]:
    if judge is None:  # pragma: no cover - guarded in __init__
        raise ConfigError("no judge")
    result = judge(question, answer)
    if isinstance(result, tuple):
        score, coherence = float(result[0]), float(result[1])
    else:
        score, coherence = float(result), 100.0
    return score, coherence


class OpenAICompatibleJudge:
    """Optional judge over an OpenAI-compatible ``/v1/chat/completions`` endpoint (urllib; never required).

    ``rubric`` is the trait's judge rubric; the endpoint must answer with a number 0-100.
    """

    def __init__(self, base_url: str, model: str, rubric: str, *, api_key: str | None = None,
                 timeout_s: float = 60.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(bad_value("base_url", base_url, "an http(s) URL"))
        self.base_url, self.model, self.rubric = base_url.rstrip("/"), model, rubric
        self.api_key, self.timeout_s = api_key, timeout_s

    def __call__(self, question: str, answer: str) -> float:
        body = {"model": self.model, "temperature": 0, "max_tokens": 8, "messages": [
            {"role": "system", "content": self.rubric + " Answer with a single number from 0 to 100."},
            {"role": "user", "content": f"Question:\n{question}\n\nAnswer:\n{answer}"}]}
        req = urllib.request.Request(self.base_url + "/chat/completions", data=json.dumps(body).encode("utf-8"),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - user-chosen endpoint
            text = json.loads(resp.read().decode("utf-8"))["choices"][0]["message"]["content"]
        digits = "".join(ch if ch.isdigit() or ch == "." else " " for ch in text).split()
        if not digits:
            raise ConfigError(f"judge answered {text!r}, not a number 0-100")
        return float(digits[0])


def _identity(loaded: Any) -> ModelIdentity:
    ident = getattr(loaded, "identity", None)
    if not isinstance(ident, ModelIdentity):
        raise ConfigError(bad_value("loaded", type(loaded).__name__, "a LoadedModel (load_model() or "
                                    "from_pretrained_objects())"))
    return ident
