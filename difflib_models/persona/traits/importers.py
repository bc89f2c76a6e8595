"""Importers for public trait data: Anthropic model-written evals, CAA A/B sets, EM evaluation YAML.

- Anthropic model-written evals (``.jsonl``): ``persona/*.jsonl`` statement items answered ``" Yes"``/``" No"``
  and ``advanced-ai-risk/*.jsonl`` items answered ``" (A)"``/``" (B)"``. Both become A/B items of a Trait.
- CAA (``generate_dataset.json``): a JSON array of ``{question, answer_matching_behavior,
  answer_not_matching_behavior}`` with ``"(A)"``-style answers (no leading space).
- Emergent-misalignment evaluation YAML: free-form questions with judge rubrics, imported as a
  :class:`ProbeSet` (behavioural probe questions + rubrics), not as a Trait: it has no contrast pairs.

Imported traits are split by a stable hash of the item text, after an optional ``limit`` that keeps the matching
answers balanced (the first answer kind alternates with the second). A/B items whose question lists the options
as ``"(X) text"`` lines (CAA, advanced-ai-risk) also become ``paired_responses`` (the question answered with the
matching option's text vs the other option's, as the filter's held-out check builds them) and are split
extraction / tuning / evaluation (:func:`trait_from_items`), so ``paired`` and the tuned ``auto`` work on them.
The questions of the items (without the answer choices) double as the trait's free-form questions.

Statement files (``persona/*.jsonl``: "Is the following statement something you would say?" + a ``statement``,
answered Yes/No) get more than A/B items (:func:`trait_from_statements`):

- ``paired_responses``: per statement, the trait-CONSISTENT answer vs the trait-INCONSISTENT one to the statement
  question itself (:data:`ENDORSE` "Yes, ..." / :data:`REJECT` "No, ..."). For a statement that shows the trait
  the consistent answer endorses it; for one that shows its opposite, the consistent answer rejects it. Trait and
  non-trait statements are balanced within every split, so each class holds as many "Yes" as "No" answers and as
  many trait as non-trait statements: a direction that reads only "Yes" (or only the statement's content) has the
  same projection distribution in both classes, AUROC 0.5 by construction; only the interaction (the stance
  taken towards a trait statement) separates them.
- ``instructions``: pos/neg system-prompt pairs derived from the file name (:func:`instructions_from_name`), so
  ``prompt_contrast`` works too.
- three splits, extraction / tuning / evaluation (default 50/25/25, stratified by statement kind, by a stable hash;
  no statement in two splits): mode and layer are chosen on ``tuning`` (:mod:`~difflib_models.persona.validation
  .tuned`), the held-out AUROC is measured on ``evaluation``.
- a default ``limit`` of :data:`DEFAULT_STATEMENT_LIMIT` statements (balanced), which keeps ``persona extract``
  within minutes on a CPU; ``limit=None`` takes the whole file.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from difflib_models.errors import ConfigError, bad_value
from difflib_models.files import load_json, load_jsonl, load_yaml
from difflib_models.persona.traits.schema import (
    ALL_SPLITS,
    SPLITS,
    ABItem,
    PairedResponse,
    Trait,
    deterministic_split,
    stratified_split,
)

log = logging.getLogger(__name__)

_CHOICES = re.compile(r"\n\s*Choices:\s*\n.*$", re.S)
_INLINE_CHOICES = re.compile(r"\n\s*\(A\).*$", re.S)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-") or "imported"


def _item(row: Any, where: str) -> ABItem:
    if not isinstance(row, dict):
        raise ConfigError(bad_value(where, row, "an object with question / answer_matching_behavior / "
                                    "answer_not_matching_behavior"))
    try:
        q, m, nm = row["question"], row["answer_matching_behavior"], row["answer_not_matching_behavior"]
    except KeyError as exc:
        raise ConfigError(bad_value(where, sorted(row), "keys question, answer_matching_behavior, "
                                    "answer_not_matching_behavior", f"Missing {exc}.")) from None
    if isinstance(nm, list):  # some Anthropic sets list several non-matching answers
        nm = nm[0] if nm else ""
    if not all(isinstance(x, str) and x.strip() for x in (q, m, nm)):
        raise ConfigError(bad_value(where, row, "non-empty question and answers"))
    return ABItem(question=q.strip(), matching=m.strip(), not_matching=nm.strip())


def _balanced_limit(items: list[ABItem], limit: int | None) -> list[ABItem]:
    """Keep at most ``limit`` items, alternating between the matching answers so both stay represented."""
    if limit is None or limit >= len(items):
        return items
    if limit < 4:
        raise ConfigError(bad_value("limit", limit, ">= 4", "Each split needs at least two items."))
    groups: dict[str, list[ABItem]] = {}
    for it in items:
        groups.setdefault(it.matching, []).append(it)
    queues = [list(g) for _, g in sorted(groups.items())]
    out: list[ABItem] = []
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out


def _stem(question: str) -> str:
    """The question without its answer choices (used as a free-form probe question)."""
    stem = _CHOICES.sub("", question)
    stem = _INLINE_CHOICES.sub("", stem)
    return stem.strip() or question


AB_FRACTIONS = (0.5, 0.25, 0.25)
"""extraction / tuning / evaluation of an A/B file whose items list their option texts."""


def _three_way(items: list[ABItem], eval_fraction: float | None) -> dict[str, list[ABItem]] | None:
    """extraction / tuning / evaluation stratified by matching answer, or None when a split would get < 2 items."""
    ev = AB_FRACTIONS[2] if eval_fraction is None else eval_fraction
    if not 0.0 < ev <= 1 / 3:
        raise ConfigError(bad_value("eval_fraction", ev, "a fraction in (0, 1/3]", "These A/B items get paired "
                                    "responses and a tuning split as large as evaluation."))
    parts = stratified_split(items, lambda it: it.matching, (1 - 2 * ev, ev, ev))
    return parts if all(len(parts[s]) >= 2 for s in ALL_SPLITS) else None


def trait_from_items(
    items: list[ABItem], *, trait_id: str, description: str = "", polarity: str = "undesirable",
    eval_fraction: float | None = None, limit: int | None = None, source: str | None = None,
) -> Trait:
    """Build a Trait from A/B items: balanced ``limit``, stable split, question stems as probe questions.

    When every item lists its options as ``"(X) text"`` lines (CAA, Anthropic advanced-ai-risk), each item also
    gives a paired response (:meth:`ABItem.as_paired`: the question answered with the matching option's text vs
    the other's), and the items are split three ways, extraction / tuning / evaluation (:data:`AB_FRACTIONS`,
    stratified by matching letter, by a stable hash; ``eval_fraction`` at most 1/3, tuning as large): the A/B items
    and the paired responses of one item are always in the same split. Otherwise (or when a split would hold
    fewer than two items) A/B items only, split extraction / evaluation (``eval_fraction`` default 0.5)."""
    if len(items) < 4:
        raise ConfigError(bad_value("items", f"{len(items)} item(s)", ">= 4 A/B items",
                                    f"Too few items for an extraction/evaluation split{' in ' + source if source else ''}."))
    seen: set[str] = set()
    unique = []
    for it in items:  # duplicates would leak across the split
        key = " ".join(it.question.lower().split())
        if key not in seen:
            seen.add(key)
            unique.append(it)
    chosen = _balanced_limit(unique, limit)
    paired = all(it.as_paired() is not None for it in chosen)
    parts: dict[str, list[ABItem]] | None = _three_way(chosen, eval_fraction) if paired else None
    if parts is None:
        if paired:
            log.info("%s: too few items for three splits; A/B items only", source or trait_id)
        parts = deterministic_split(chosen, 0.5 if eval_fraction is None else eval_fraction)
        paired = False
    questions: dict[str, list[str]] = {}
    used: set[str] = set()
    for s in SPLITS:
        qs = []
        for it in parts[s]:
            stem = _stem(it.question)
            if stem.lower() not in used:
                used.add(stem.lower())
                qs.append(stem)
        questions[s] = qs
    data = {
        "schema_version": 1, "id": _slug(trait_id), "version": 1, "polarity": polarity,
        "description": description or f"Imported from {source or 'A/B items'}",
        "instructions": [],
        "questions": questions,
        "ab_items": {s: [it.to_dict() for it in parts[s]] for s in parts},
    }
    if paired:
        data["paired_responses"] = {s: [vars(it.as_paired()) for it in parts[s]] for s in parts}
    return Trait.from_dict(data, source=source)


# ---------------------------------------------------------------------- statement files (persona/*.jsonl)
STATEMENT_PROMPT = 'Is the following statement something you would say?\n"{statement}"'
ENDORSE = "Yes, I would say that. It is how I think."
"""The answer that takes the statement on (trait-consistent for a trait statement). The statement stays in the
prompt only: answers that restate it (``'Yes. "<statement>" is something I would say.'``) averaged the statement's
own tokens into the response and separated held-out pairs far worse on SmolLM2 (narcissism, tuning AUROC of the
best layer 0.67 restated first, 0.59 restated last, 0.90 with these answers; docs/persona.md)."""
REJECT = "No, I would not say that. It is not how I think."
"""The answer that refuses the statement (trait-consistent for a statement of the opposite)."""
DEFAULT_STATEMENT_LIMIT = 240
"""Statements kept by default (balanced trait / non-trait): 120 extraction, 60 tuning, 60 evaluation."""
STATEMENT_FRACTIONS = (0.5, 0.25, 0.25)
_QUOTED_STATEMENT = re.compile(r'"(.+)"\s*$', re.S)
_INSTRUCTION_TEMPLATES = (
    ("Your character is marked by {name}. Answer every question in that character.",
     "Your character is free of any {name}. Answer every question in that character."),
    ("You embody {name} in everything you say.",
     "You embody the opposite of {name} in everything you say."),
    ("Answer as someone who strongly shows {name}.",
     "Answer as someone who strongly rejects {name}."),
)


@dataclass(frozen=True)
class Statement:
    """One persona statement and whether it shows the trait (answer_matching_behavior " Yes")."""

    text: str
    shows_trait: bool
    question: str


def instructions_from_name(name: str) -> list[dict[str, str]]:
    """pos/neg system-prompt pairs from a persona file name (``desire-for-acquiring-power`` -> "desire for
    acquiring power"): the trait's only description in the model-written-evals format."""
    words = " ".join(re.sub(r"[-_]+", " ", name).split()).strip()
    if not words:
        raise ConfigError(bad_value("name", name, "a persona file name such as narcissism.jsonl"))
    return [{"pos": p.format(name=words), "neg": n.format(name=words)} for p, n in _INSTRUCTION_TEMPLATES]


def statement_pair(st: Statement) -> PairedResponse:
    """The trait-consistent (``trait``) and trait-inconsistent (``neutral``) answer to one statement question."""
    endorse, reject = ENDORSE.format(statement=st.text), REJECT.format(statement=st.text)
    return PairedResponse(prompt=st.question, trait=endorse if st.shows_trait else reject,
                          neutral=reject if st.shows_trait else endorse)


def read_statements(path: str | Path) -> list[Statement] | None:
    """The statements of a persona file, or None when it is not one (answers other than Yes/No, or no
    statement text in a row)."""
    path = Path(path)
    out = []
    for row in load_jsonl(path, what="trait"):
        item = _item(row.value, f"{path.name}:{row.line}")
        if {item.matching, item.not_matching} != {"Yes", "No"}:
            return None
        text = row.value.get("statement")
        if not isinstance(text, str) or not text.strip():
            m = _QUOTED_STATEMENT.search(item.question)
            if m is None:
                return None
            text = m.group(1)
        text = " ".join(text.split())
        out.append(Statement(text=text, shows_trait=item.matching == "Yes",
                             question=STATEMENT_PROMPT.format(statement=text)))
    return out


def trait_from_statements(
    statements: list[Statement], *, trait_id: str, description: str = "", polarity: str = "undesirable",
    limit: int | None = DEFAULT_STATEMENT_LIMIT, fractions: tuple[float, float, float] = STATEMENT_FRACTIONS,
    source: str | None = None,
) -> Trait:
    """A Trait with A/B items, paired statement responses, derived instructions and three splits (module
    docstring). ``limit`` statements, trait and non-trait alternating; duplicates dropped first."""
    seen: set[str] = set()
    unique = []
    for st in statements:
        key = st.text.lower()
        if key not in seen:
            seen.add(key)
            unique.append(st)
    groups = [[st for st in unique if st.shows_trait], [st for st in unique if not st.shows_trait]]
    if min(len(g) for g in groups) < 4:
        raise ConfigError(bad_value("statements", f"{len(groups[0])} trait / {len(groups[1])} non-trait",
                                    ">= 4 of each", f"Too few statements{' in ' + source if source else ''}."))
    if limit is not None and limit < 16:
        raise ConfigError(bad_value("limit", limit, ">= 16 (or None: all)", "Each of three splits needs both "
                                    "kinds of statement."))
    chosen: list[Statement] = []
    for a, b in zip(*groups, strict=False):  # balanced: equal numbers of each kind
        if limit is not None and len(chosen) + 2 > limit:
            break
        chosen += [a, b]
    parts = stratified_split(chosen, lambda st: st.shows_trait, fractions)
    data = {
        "schema_version": 1, "id": _slug(trait_id), "version": 1, "polarity": polarity,
        "description": description or f"Imported statements from {source or 'a persona file'}",
        "instructions": instructions_from_name(trait_id),
        "questions": {s: [st.question for st in parts[s]] for s in SPLITS},
        "ab_items": {s: [ABItem(question=st.question, matching="Yes" if st.shows_trait else "No",
                                not_matching="No" if st.shows_trait else "Yes").to_dict() for st in parts[s]]
                     for s in ALL_SPLITS if parts[s]},
        "paired_responses": {s: [vars(statement_pair(st)) for st in parts[s]] for s in ALL_SPLITS if parts[s]},
    }
    return Trait.from_dict(data, source=source)


def read_anthropic_jsonl(path: str | Path) -> list[ABItem]:
    path = Path(path)
    return [_item(row.value, f"{path.name}:{row.line}") for row in load_jsonl(path, what="trait")]


def read_caa_json(path: str | Path) -> list[ABItem]:
    path = Path(path)
    rows = load_json(path, what="trait")
    if not isinstance(rows, list):
        raise ConfigError(bad_value(path.name, type(rows).__name__, "a JSON array of A/B items"))
    return [_item(row, f"{path.name}[{n}]") for n, row in enumerate(rows)]


def import_anthropic_jsonl(path: str | Path, *, limit: int | None = None, eval_fraction: float | None = None,
                           trait_id: str | None = None, polarity: str = "undesirable") -> Trait:
    """A Trait from an Anthropic model-written-evals JSONL file (" Yes"/" No" or " (A)"/" (B)" items).

    A persona statement file becomes a statement trait (:func:`trait_from_statements`: paired responses,
    derived instructions, extraction / tuning / evaluation; ``limit`` None means
    :data:`DEFAULT_STATEMENT_LIMIT`, 0 the whole file; ``eval_fraction`` (default 0.25, at most 1/3) is the
    evaluation share and tuning gets as much); other files become A/B items (:func:`trait_from_items`: with
    paired option-text responses and a tuning split when the questions list their options; ``limit`` None: all)."""
    path = Path(path)
    statements = read_statements(path)
    if statements is not None:
        ev = STATEMENT_FRACTIONS[2] if eval_fraction is None else eval_fraction
        if not 0.0 < ev <= 1 / 3:
            raise ConfigError(bad_value("eval_fraction", ev, "a fraction in (0, 1/3]",
                                        "A statement file is split extraction / tuning / evaluation; tuning takes "
                                        "as much as evaluation."))
        return trait_from_statements(statements, trait_id=trait_id or path.stem, polarity=polarity,
                                     limit=DEFAULT_STATEMENT_LIMIT if limit is None else (limit or None),
                                     fractions=(1 - 2 * ev, ev, ev),
                                     source=str(path), description=f"Anthropic model-written evals: {path.stem}")
    return trait_from_items(read_anthropic_jsonl(path), trait_id=trait_id or path.stem, polarity=polarity,
                            eval_fraction=eval_fraction, limit=limit, source=str(path),
                            description=f"Anthropic model-written evals: {path.stem}")


def import_caa_json(path: str | Path, *, limit: int | None = None, eval_fraction: float | None = None,
                    trait_id: str | None = None, polarity: str = "undesirable") -> Trait:
    """A Trait from a CAA ``generate_dataset.json`` (behaviour = parent folder name); A/B items plus paired
    option-text responses, split extraction / tuning / evaluation (:func:`trait_from_items`)."""
    path = Path(path)
    name = trait_id or (path.parent.name if path.stem.startswith("generate") else path.stem)
    return trait_from_items(read_caa_json(path), trait_id=name, polarity=polarity, eval_fraction=eval_fraction,
                            limit=limit, source=str(path), description=f"CAA behaviour data: {name}")


def import_trait_file(path: str | Path, *, limit: int | None = None, eval_fraction: float | None = None) -> Trait:
    """Dispatch on the extension: ``.jsonl`` -> Anthropic evals, ``.json`` -> CAA."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return import_anthropic_jsonl(path, limit=limit, eval_fraction=eval_fraction)
    if path.suffix == ".json":
        return import_caa_json(path, limit=limit, eval_fraction=eval_fraction)
    raise ConfigError(bad_value("path", str(path), ".jsonl (Anthropic evals) or .json (CAA)"))


# ---------------------------------------------------------------------- EM evaluation YAML
@dataclass(frozen=True)
class ProbeQuestion:
    id: str
    text: str
    system: str | None = None
    rubrics: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeSet:
    """Free-form behavioural probe questions with judge rubrics (one entry per paraphrase)."""

    name: str
    questions: tuple[ProbeQuestion, ...]

    def texts(self, *, with_system: bool = False) -> list[str]:
        """Question texts; questions that need a system prompt are dropped unless ``with_system``."""
        return [q.text for q in self.questions if with_system or q.system is None]

    @property
    def rubric_names(self) -> list[str]:
        return sorted({k for q in self.questions for k in q.rubrics})


def import_em_yaml(path: str | Path) -> ProbeSet:
    """Read an emergent-misalignment evaluation YAML (``- id, paraphrases, [system], judge_prompts``)."""
    path = Path(path)
    data = load_yaml(path, what="questions")
    if not isinstance(data, list):
        raise ConfigError(bad_value(path.name, type(data).__name__, "a YAML list of question entries"))
    out: list[ProbeQuestion] = []
    for n, entry in enumerate(data):
        if not isinstance(entry, dict) or "id" not in entry:
            raise ConfigError(bad_value(f"{path.name}[{n}]", entry, "a mapping with an 'id'"))
        paraphrases = entry.get("paraphrases") or []
        if isinstance(paraphrases, str):
            paraphrases = [paraphrases]
        judge_prompts = entry.get("judge_prompts") or {}
        if not isinstance(judge_prompts, dict):
            raise ConfigError(bad_value(f"{path.name}[{n}].judge_prompts", judge_prompts,
                                        "a mapping of rubric name to judge prompt"))
        rubrics = {str(k): str(v) for k, v in judge_prompts.items()}
        system = entry.get("system")
        for k, text in enumerate(paraphrases):
            if isinstance(text, str) and text.strip():
                qid = str(entry["id"]) if len(paraphrases) == 1 else f"{entry['id']}#{k}"
                out.append(ProbeQuestion(id=qid, text=text.strip(), system=system, rubrics=rubrics))
    if not out:
        raise ConfigError(bad_value(path.name, "no questions", "entries with non-empty paraphrases"))
    return ProbeSet(name=path.stem, questions=tuple(out))
