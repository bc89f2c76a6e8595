"""Importers for public trait data: Anthropic model-written evals, CAA A/B sets, EM evaluation YAML.

- Anthropic model-written evals (``.jsonl``): ``persona/*.jsonl`` statement items answered ``" Yes"``/``" No"``
  and ``advanced-ai-risk/*.jsonl`` items answered ``" (A)"``/``" (B)"``. Both become A/B items of a Trait.
- CAA (``generate_dataset.json``): a JSON array of ``{question, answer_matching_behavior,
  answer_not_matching_behavior}`` with ``"(A)"``-style answers (no leading space).
- Emergent-misalignment evaluation YAML: free-form questions with judge rubrics, imported as a
  :class:`ProbeSet` (behavioural probe questions + rubrics), not as a Trait: it has no contrast pairs.

Imported traits are split into extraction and evaluation parts by a stable hash of the item text, after an
optional ``limit`` that keeps the matching answers balanced (the first answer kind alternates with the second).
The questions of the items (without the answer choices) double as the trait's free-form questions.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from difflib_models.errors import ConfigError, bad_value
from difflib_models.files import load_json, load_jsonl, load_yaml
from difflib_models.persona.traits.schema import SPLITS, ABItem, Trait, deterministic_split

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


def trait_from_items(
    items: list[ABItem], *, trait_id: str, description: str = "", polarity: str = "undesirable",
    eval_fraction: float = 0.5, limit: int | None = None, source: str | None = None,
) -> Trait:
    """Build a Trait from A/B items: balanced ``limit``, stable split, question stems as probe questions."""
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
    parts = deterministic_split(chosen, eval_fraction)
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
        "ab_items": {s: [it.to_dict() for it in parts[s]] for s in SPLITS},
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


def import_anthropic_jsonl(path: str | Path, *, limit: int | None = None, eval_fraction: float = 0.5,
                           trait_id: str | None = None, polarity: str = "undesirable") -> Trait:
    """A Trait from an Anthropic model-written-evals JSONL file (" Yes"/" No" or " (A)"/" (B)" items)."""
    path = Path(path)
    return trait_from_items(read_anthropic_jsonl(path), trait_id=trait_id or path.stem, polarity=polarity,
                            eval_fraction=eval_fraction, limit=limit, source=str(path),
                            description=f"Anthropic model-written evals: {path.stem}")


def import_caa_json(path: str | Path, *, limit: int | None = None, eval_fraction: float = 0.5,
                    trait_id: str | None = None, polarity: str = "undesirable") -> Trait:
    """A Trait from a CAA ``generate_dataset.json`` (behaviour = parent folder name)."""
    path = Path(path)
    name = trait_id or (path.parent.name if path.stem.startswith("generate") else path.stem)
    return trait_from_items(read_caa_json(path), trait_id=name, polarity=polarity, eval_fraction=eval_fraction,
                            limit=limit, source=str(path), description=f"CAA behaviour data: {name}")


def import_trait_file(path: str | Path, *, limit: int | None = None, eval_fraction: float = 0.5) -> Trait:
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
