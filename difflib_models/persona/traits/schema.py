"""Trait files: model-agnostic YAML definitions of a persona trait, validated up front.

Schema (``schema_version: 1``)::

    schema_version: 1
    id: evil                      # [a-z0-9_-]+
    version: 1
    description: ...
    polarity: undesirable         # or desirable: which pole a monitor must worry about
    instructions:                 # pos/neg system-prompt pairs (the paper uses 5)
      - {pos: "...", neg: "..."}
    questions:                    # disjoint; the paper uses 20 + 20
      extraction: ["...", ...]
      evaluation: ["...", ...]
      response: ["...", ...]      # optional: what the response checks ask (default: evaluation); questions whose
                                  # honest answer leaves the base room to show the trait (disjoint from extraction)
    ab_items:                     # optional; CAA / Anthropic field names
      extraction: [{question, answer_matching_behavior, answer_not_matching_behavior}, ...]
      evaluation: [...]           # (a flat list is split deterministically instead)
    paired_responses:             # optional; teacher-forced under a neutral prompt
      extraction: [{prompt, trait, neutral}, ...]
      tuning: [...]               # optional third split (ab_items too): mode/layer chosen here, not on evaluation
      evaluation: [...]           # (a flat list is split deterministically instead)
    judge: {rubric: "..."}        # optional; used only by generate_judge extraction

``load_trait(spec)`` (:mod:`~difflib_models.persona.traits.loading`) takes a built-in id (``builtin_traits()``),
a trait YAML, or a data file the importers read (Anthropic evals ``.jsonl``, CAA ``.json``). ``Trait.hash`` is a
sha256 of the canonical JSON of the validated content: vector files record it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from difflib_models.errors import ConfigError, bad_value
from difflib_models.io import atomic_write_text

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SPLITS = ("extraction", "evaluation")
"""The two required splits of every trait."""
RESPONSE = "response"
"""Optional question split: the questions a response check asks (:meth:`Trait.response_questions`)."""
TUNING = "tuning"
ALL_SPLITS = ("extraction", TUNING, "evaluation")
"""``tuning`` is optional (imported traits have it): mode and layer are chosen there, never on ``evaluation``."""
MIN_QUESTIONS = 2
MIN_ITEMS_PER_SPLIT = 2
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_OPTION = re.compile(r"^\s*\(([A-Z])\)\s*(.+?)\s*$", re.MULTILINE)


def option_text(question: str, answer: str) -> str:
    """The text of option ``answer`` (``"(A)"``, ``"B"``) as listed in ``question`` (``"(A) text"`` on its own
    line, the CAA and Anthropic advanced-ai-risk layout); ConfigError naming ``answer`` when it is not there."""
    letter = answer.strip().strip("()").strip()
    options = {m.group(1): m.group(2) for m in _OPTION.finditer(question)}
    if letter not in options:
        raise ConfigError(bad_value("answer", answer, sorted(options), "the option must appear as '(X) text' "
                                    "on its own line of the question"))
    return options[letter]


@dataclass(frozen=True)
class ABItem:
    """A two-choice item. ``matching`` is the answer that shows the trait (CAA: answer_matching_behavior)."""

    question: str
    matching: str
    not_matching: str

    def to_dict(self) -> dict[str, str]:
        return {"question": self.question, "answer_matching_behavior": self.matching,
                "answer_not_matching_behavior": self.not_matching}

    def as_paired(self) -> PairedResponse | None:
        """The same question answered with the matching option's text (``trait``) and with the other option's
        (``neutral``); None when the question does not list both options as ``"(X) text"`` lines."""
        try:
            return PairedResponse(prompt=self.question, trait=option_text(self.question, self.matching),
                                  neutral=option_text(self.question, self.not_matching))
        except ConfigError:
            return None


@dataclass(frozen=True)
class PairedResponse:
    """One prompt with a trait-showing and a neutral answer."""

    prompt: str
    trait: str
    neutral: str


@dataclass(frozen=True)
class Instruction:
    pos: str
    neg: str


@dataclass(frozen=True)
class Trait:
    """A validated trait definition (see the module docstring for the schema)."""

    id: str
    description: str
    polarity: str
    instructions: tuple[Instruction, ...]
    questions: dict[str, tuple[str, ...]]
    ab_items: dict[str, tuple[ABItem, ...]] = field(default_factory=dict)
    paired_responses: dict[str, tuple[PairedResponse, ...]] = field(default_factory=dict)
    judge: dict[str, Any] | None = None
    version: int = 1
    source: str | None = None

    # ------------------------------------------------------------------ access
    def split_questions(self, split: str) -> list[str]:
        """The questions of ``split`` (``extraction``, ``evaluation``; ``response``: empty when the trait has none,
        see :meth:`response_questions`)."""
        if split == RESPONSE:
            return list(self.questions.get(RESPONSE, ()))
        return list(self.questions[_check_split(split)])

    def response_questions(self) -> list[str]:
        """The questions whose answers the response checks read (the gate's ``persona.response_*`` metrics, the
        PersonaMonitor's ``responses``): the ``response`` split where the trait has one, else the evaluation split.
        A response check needs questions on which the base's honest answers leave room toward the trait (its
        headroom, :mod:`difflib_models.persona.shift.headroom`); an evaluation split the base already answers like
        the trait (SmolLM2 on invented entities) has none."""
        return list(self.questions.get(RESPONSE) or self.questions["evaluation"])

    def split_ab(self, split: str) -> list[ABItem]:
        return list(self.ab_items.get(_check_split(split), ()))

    def split_paired(self, split: str) -> list[PairedResponse]:
        return list(self.paired_responses.get(_check_split(split), ()))

    @property
    def has_tuning(self) -> bool:
        """True when the A/B items or paired responses carry a ``tuning`` split (imported traits)."""
        return bool(self.ab_items.get(TUNING) or self.paired_responses.get(TUNING))

    @property
    def has_ab(self) -> bool:
        return bool(self.ab_items)

    @property
    def has_paired(self) -> bool:
        return bool(self.paired_responses)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "id": self.id,
            "version": self.version,
            "description": self.description,
            "polarity": self.polarity,
            "instructions": [asdict(i) for i in self.instructions],
            "questions": {k: list(v) for k, v in self.questions.items()},
            "ab_items": {k: [a.to_dict() for a in v] for k, v in self.ab_items.items()},
            "paired_responses": {k: [asdict(p) for p in v] for k, v in self.paired_responses.items()},
            "judge": self.judge,
        }

    @property
    def hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None) -> Trait:
        where = f" in {source}" if source else ""
        if not isinstance(data, dict):
            raise ConfigError(bad_value("trait", type(data).__name__, "a mapping (YAML object)", f"Check the file{where}."))
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ConfigError(bad_value("schema_version", version, [SCHEMA_VERSION], f"Trait file{where}."))
        tid = data.get("id")
        if not isinstance(tid, str) or not _ID.match(tid):
            raise ConfigError(bad_value("id", tid, "lower-case letters, digits, '_', '-', '.'", f"Trait file{where}."))
        polarity = data.get("polarity", "undesirable")
        if polarity not in ("undesirable", "desirable"):
            raise ConfigError(bad_value("polarity", polarity, ["undesirable", "desirable"], f"Trait {tid!r}{where}."))
        instructions = tuple(_instruction(i, n, tid) for n, i in enumerate(data.get("instructions") or []))
        questions = _questions(data.get("questions"), tid)
        ab = _split_items(data.get("ab_items"), "ab_items", tid, _ab_item)
        paired = _split_items(data.get("paired_responses"), "paired_responses", tid, _paired)
        judge = data.get("judge")
        if judge is not None and not isinstance(judge, dict):
            raise ConfigError(bad_value("judge", judge, "a mapping such as {rubric: ...}", f"Trait {tid!r}."))
        version_n = data.get("version", 1)
        if isinstance(version_n, bool) or not isinstance(version_n, int):
            raise ConfigError(bad_value("version", version_n, "an integer", f"Trait {tid!r}{where}."))
        trait = cls(id=tid, description=str(data.get("description", "")), polarity=polarity,
                    instructions=instructions, questions=questions, ab_items=ab, paired_responses=paired,
                    judge=judge, version=version_n, source=source)
        _check_balance(trait)
        return trait


def _check_split(split: str) -> str:
    if split not in ALL_SPLITS:
        raise ConfigError(bad_value("split", split, ALL_SPLITS))
    return split


def _text(value: Any, argument: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(bad_value(argument, value, "a non-empty string"))
    return value


def _instruction(item: Any, n: int, tid: str) -> Instruction:
    if not isinstance(item, dict) or "pos" not in item or "neg" not in item:
        raise ConfigError(bad_value(f"instructions[{n}]", item, "a mapping {pos: ..., neg: ...}", f"Trait {tid!r}."))
    return Instruction(pos=_text(item["pos"], f"instructions[{n}].pos"), neg=_text(item["neg"], f"instructions[{n}].neg"))


def _norm(q: str) -> str:
    return " ".join(q.lower().split())


def _question_list(items: Any, split: str, tid: str, hint: str) -> tuple[str, ...]:
    if not isinstance(items, list):
        raise ConfigError(bad_value(f"questions.{split}", items, "a list of strings"))
    out = tuple(_text(q, f"questions.{split}[{n}]") for n, q in enumerate(items))
    if len(out) < MIN_QUESTIONS:
        raise ConfigError(bad_value(f"questions.{split}", f"{len(out)} question(s)", f">= {MIN_QUESTIONS} questions",
                                    f"Trait {tid!r}: {hint}"))
    return out


def _questions(data: Any, tid: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(data, dict) or not all(s in data for s in SPLITS):
        raise ConfigError(bad_value("questions", data, "a mapping with 'extraction' and 'evaluation' lists",
                                    f"Trait {tid!r}: the two splits keep evaluation held out."))
    hints = {split: "too few items for a split; the paper uses 20 extraction + 20 evaluation questions."
             for split in SPLITS}
    hints[RESPONSE] = "leave the split out to ask the evaluation questions instead."
    out = {split: _question_list(data[split], split, tid, hints[split])
           for split in (*SPLITS, RESPONSE) if split in SPLITS or data.get(split) is not None}
    unknown = sorted(set(data) - {*SPLITS, RESPONSE})
    if unknown:
        raise ConfigError(bad_value("questions", f"split(s) {unknown}", [*SPLITS, RESPONSE], f"Trait {tid!r}."))
    for held in (s for s in ("evaluation", RESPONSE) if s in out):
        overlap = {_norm(q) for q in out["extraction"]} & {_norm(q) for q in out[held]}
        if overlap:
            raise ConfigError(bad_value(
                "questions", f"{len(overlap)} question(s) in extraction and {held}: {sorted(overlap)[:3]}",
                f"disjoint extraction and {held} questions",
                f"Trait {tid!r}: a held-out check on extraction questions is not held out."))
    return out


def _ab_item(item: Any, argument: str) -> ABItem:
    if not isinstance(item, dict):
        raise ConfigError(bad_value(argument, item, "a mapping with question / answer_matching_behavior / "
                                    "answer_not_matching_behavior"))
    q = _text(item.get("question"), f"{argument}.question")
    m = _text(item.get("answer_matching_behavior"), f"{argument}.answer_matching_behavior")
    nm = _text(item.get("answer_not_matching_behavior"), f"{argument}.answer_not_matching_behavior")
    if m.strip() == nm.strip():
        raise ConfigError(bad_value(argument, item, "two different answers"))
    return ABItem(question=q, matching=m.strip(), not_matching=nm.strip())


def _paired(item: Any, argument: str) -> PairedResponse:
    if not isinstance(item, dict):
        raise ConfigError(bad_value(argument, item, "a mapping {prompt, trait, neutral}"))
    return PairedResponse(prompt=_text(item.get("prompt"), f"{argument}.prompt"),
                          trait=_text(item.get("trait"), f"{argument}.trait"),
                          neutral=_text(item.get("neutral"), f"{argument}.neutral"))


def _split_items(data: Any, name: str, tid: str, parse: Any) -> dict[str, tuple[Any, ...]]:
    if data is None or data == [] or data == {}:
        return {}
    if isinstance(data, list):
        items = [parse(x, f"{name}[{n}]") for n, x in enumerate(data)]
        parts = deterministic_split(items)
    elif isinstance(data, dict) and all(s in data for s in SPLITS) and set(data) <= set(ALL_SPLITS):
        parts = {s: [parse(x, f"{name}.{s}[{n}]") for n, x in enumerate(data[s] or [])] for s in ALL_SPLITS
                 if s in data}
    else:
        raise ConfigError(bad_value(name, data, "a list (split automatically) or {extraction: [...], evaluation: [...]}"
                                    " (optionally tuning: [...])", f"Trait {tid!r}."))
    for s in parts:
        if len(parts[s]) < MIN_ITEMS_PER_SPLIT:
            raise ConfigError(bad_value(f"{name}.{s}", f"{len(parts[s])} item(s)", f">= {MIN_ITEMS_PER_SPLIT} per split",
                                        f"Trait {tid!r}: too few items for a split; add items or drop `{name}`."))
    key = (lambda x: _norm(x.question)) if name == "ab_items" else (lambda x: _norm(x.prompt) + "\x00" + _norm(x.trait))
    keys = {s: {key(x) for x in parts[s]} for s in parts}
    if any(keys[a] & keys[b] for i, a in enumerate(parts) for b in list(parts)[i + 1:]):
        raise ConfigError(bad_value(name, "items present in both splits of a pair", "disjoint extraction, tuning and "
                                    "evaluation items", f"Trait {tid!r}."))
    return {s: tuple(parts[s]) for s in parts}


def deterministic_split(items: list[Any], eval_fraction: float = 0.5) -> dict[str, list[Any]]:
    """Split by a hash of each item's text (stable across runs and insertion order); ~``eval_fraction`` held out."""
    if not 0.0 < eval_fraction < 1.0:
        raise ConfigError(bad_value("eval_fraction", eval_fraction, "a fraction in (0, 1)"))
    keyed = sorted(items, key=lambda x: hashlib.sha256(repr(x).encode("utf-8")).hexdigest())
    n_eval = round(len(keyed) * eval_fraction)
    return {"extraction": keyed[n_eval:], "evaluation": keyed[:n_eval]}


def stratified_split(items: list[Any], label: Any, fractions: tuple[float, float, float]) -> dict[str, list[Any]]:
    """Split into extraction / tuning / evaluation by ``fractions`` (summing to 1), separately within each
    ``label(item)`` group, so every split holds the groups in the same proportion (+-1); order by the stable hash
    of :func:`deterministic_split`. Items are never in two splits."""
    if len(fractions) != 3 or any(not 0.0 <= f < 1.0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9 \
            or fractions[0] <= 0 or fractions[2] <= 0:
        raise ConfigError(bad_value("fractions", fractions, "(extraction, tuning, evaluation) summing to 1, "
                                    "extraction and evaluation > 0"))
    groups: dict[Any, list[Any]] = {}
    for it in items:
        groups.setdefault(label(it), []).append(it)
    out: dict[str, list[Any]] = {s: [] for s in ALL_SPLITS}
    for _, group in sorted(groups.items(), key=lambda kv: repr(kv[0])):
        keyed = sorted(group, key=lambda x: hashlib.sha256(repr(x).encode("utf-8")).hexdigest())
        n_eval = round(len(keyed) * fractions[2])
        n_tune = round(len(keyed) * fractions[1])
        out["evaluation"] += keyed[:n_eval]
        out[TUNING] += keyed[n_eval:n_eval + n_tune]
        out["extraction"] += keyed[n_eval + n_tune:]
    return out


def _letter(answer: str) -> str:
    return answer.strip().strip("()").strip().upper()


def _check_balance(trait: Trait) -> None:
    for split, items in trait.ab_items.items():
        letters = [_letter(a.matching) for a in items]
        common = max(set(letters), key=letters.count)
        frac = letters.count(common) / len(letters)
        if len(items) >= 8 and frac > 0.7:
            log.warning("trait %r: %.0f%% of %s A/B items have matching answer %r; an A/B vector may learn the "
                        "letter instead of the trait (balance the items)", trait.id, 100 * frac, split, common)
