"""Typed records of the gate's ``behavioural`` report section, as the behavioural eval hands it to the report layer.

- :class:`RateSummary`: one model's single-order misalignment rate (n, n_misaligned, rate, 95% Wilson CI; the A/B
  mode's mean P(matching letter), the judge's unscored count).
- :class:`BalancedSide` and :class:`PairedShift`: one model's position-balanced A/B score, and a paired per-item
  difference (candidate - base, control - base, candidate - control) with its seeded percentile-bootstrap CI.
- :class:`BalancedScores`: the balanced block of one trait (score definition, per-model scores, the paired shifts).
- :class:`BehaviourItemRow`: one kept item (an A/B item's P(matching letter) and balanced score, or a judged answer).
- :class:`BehaviouralBlock`: the A/B block of one trait; :class:`BehaviouralSection`: the whole section (A/B mode:
  the first trait's block at the top plus ``traits``; judge mode: the judge's rates, plus the A/B ``traits`` when
  balanced checks need them).

The records are frozen. ``to_dict()`` gives exactly the objects report.json has always held (``report.schema.json``
unchanged); ``from_dict()`` / :meth:`BehaviouralSection.from_report` read them back (``report --from``), taking what
the schema requires and tolerating the rest. The gate engine keeps reading the report document itself (it is
fail-closed on hand-written or older reports, with its own messages).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from difflib_models.errors import ConfigError, bad_value

__all__ = ["BalancedScores", "BalancedSide", "BehaviourItemRow", "BehaviouralBlock", "BehaviouralSection",
           "PairedShift", "RateSummary"]

BEHAVIOURAL_MODES = ("ab_probability", "judge")


def _obj(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(bad_value(what, type(data).__name__, "a JSON object"))
    return data


def _need(data: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in data:
        raise ConfigError(bad_value(what, sorted(data), f"an object with {key!r}"))
    return data[key]


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(bad_value(what, value, "an integer"))
    return value


def _num(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(bad_value(what, value, "a number"))
    return value  # kept as written: report.json holds what the gate computed


def _opt(value: Any, conv: Any, what: str) -> Any:
    return None if value is None else conv(value, what)


def _frozen(mapping: Mapping[str, Any]) -> types.MappingProxyType[str, Any]:
    return types.MappingProxyType(dict(mapping))


def _typed_values(mapping: Mapping[str, Any], record: type, what: str) -> None:
    if not all(isinstance(v, record) for v in mapping.values()):
        raise ConfigError(bad_value(what, [type(v).__name__ for v in mapping.values()], f"{record.__name__} records"))


# ---------------------------------------------------------------------------------------------- rates
@dataclass(frozen=True)
class RateSummary:
    """One model's single-order misalignment rate: ``n`` scored items, ``n_misaligned`` of them misaligned, the rate
    and its 95% Wilson interval. With ``n == 0`` the rate is 0.0 but no evidence (the engine refuses it).
    ``mean_p_matching``: the A/B mode's mean P(matching letter); ``n_unscored``: items left out (a judge's CODE /
    REFUSAL); each is written only when set."""

    n: int
    n_misaligned: int
    rate: float
    ci_low: float
    ci_high: float
    mean_p_matching: float | None = None
    n_unscored: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, "n_misaligned": self.n_misaligned, "rate": self.rate,
                               "ci_low": self.ci_low, "ci_high": self.ci_high}
        if self.mean_p_matching is not None:
            out["mean_p_matching"] = self.mean_p_matching
        if self.n_unscored is not None:
            out["n_unscored"] = self.n_unscored
        return out

    @classmethod
    def from_dict(cls, data: Any, what: str = "behavioural rate") -> RateSummary:
        d = _obj(data, what)
        return cls(n=_int(_need(d, "n", what), f"{what} n"),
                   n_misaligned=_int(_need(d, "n_misaligned", what), f"{what} n_misaligned"),
                   rate=_num(_need(d, "rate", what), f"{what} rate"),
                   ci_low=_num(_need(d, "ci_low", what), f"{what} ci_low"),
                   ci_high=_num(_need(d, "ci_high", what), f"{what} ci_high"),
                   mean_p_matching=_opt(d.get("mean_p_matching"), _num, f"{what} mean_p_matching"),
                   n_unscored=_opt(d.get("n_unscored"), _int, f"{what} n_unscored"))


# ---------------------------------------------------------------------------------------------- balanced
@dataclass(frozen=True)
class PairedShift:
    """The mean of per-item differences of balanced scores (``n`` pairs) with a seeded percentile-bootstrap CI
    (``n_boot`` resamples, ``level``); ``n == 0``: mean and CI are 0.0 and no evidence."""

    n: int
    mean: float
    ci_low: float
    ci_high: float
    n_boot: int | None = None
    level: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, "mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high}
        if self.n_boot is not None:
            out["n_boot"] = self.n_boot
        if self.level is not None:
            out["level"] = self.level
        return out

    @classmethod
    def from_dict(cls, data: Any, what: str = "behavioural paired shift") -> PairedShift:
        d = _obj(data, what)
        return cls(n=_int(_need(d, "n", what), f"{what} n"), mean=_num(_need(d, "mean", what), f"{what} mean"),
                   ci_low=_num(_need(d, "ci_low", what), f"{what} ci_low"),
                   ci_high=_num(_need(d, "ci_high", what), f"{what} ci_high"),
                   n_boot=_opt(d.get("n_boot"), _int, f"{what} n_boot"),
                   level=_opt(d.get("level"), _num, f"{what} level"))


@dataclass(frozen=True)
class BalancedSide:
    """One model's position-balanced score: ``n`` items with a finite score (``n_unscored`` without), their mean
    and the order effect (half the mean difference between the matching answer listed first and second)."""

    n: int
    mean: float
    n_unscored: int | None = None
    order_effect: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n}
        if self.n_unscored is not None:
            out["n_unscored"] = self.n_unscored
        out["mean"] = self.mean
        if self.order_effect is not None:
            out["order_effect"] = self.order_effect
        return out

    @classmethod
    def from_dict(cls, data: Any, what: str = "behavioural balanced side") -> BalancedSide:
        d = _obj(data, what)
        return cls(n=_int(_need(d, "n", what), f"{what} n"), mean=_num(_need(d, "mean", what), f"{what} mean"),
                   n_unscored=_opt(d.get("n_unscored"), _int, f"{what} n_unscored"),
                   order_effect=_opt(d.get("order_effect"), _num, f"{what} order_effect"))


@dataclass(frozen=True)
class BalancedScores:
    """The position-balanced block of one trait: how an item is scored (``score``), the item count and bootstrap
    seed, each model's :class:`BalancedSide`, and the paired shifts (None when a side is missing)."""

    models: Mapping[str, BalancedSide]
    shift: PairedShift | None
    control_shift: PairedShift | None = None
    excess_over_control: PairedShift | None = None
    score: str | None = None
    n_items: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        _typed_values(self.models, BalancedSide, "balanced.models")
        object.__setattr__(self, "models", _frozen(self.models))
        for name in ("shift", "control_shift", "excess_over_control"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, PairedShift):
                raise ConfigError(bad_value(f"balanced.{name}", type(v).__name__, "a PairedShift or None"))

    def paired(self, key: str) -> PairedShift | None:
        """``shift``, ``control_shift`` or ``excess_over_control``."""
        if key not in ("shift", "control_shift", "excess_over_control"):
            raise ConfigError(bad_value("paired", key, ("shift", "control_shift", "excess_over_control")))
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("score", "n_items", "seed"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out["models"] = {k: v.to_dict() for k, v in self.models.items()}
        for key in ("shift", "control_shift", "excess_over_control"):
            v = getattr(self, key)
            out[key] = None if v is None else v.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any, what: str = "behavioural balanced") -> BalancedScores:
        d = _obj(data, what)
        models = _obj(_need(d, "models", what), f"{what}.models")
        _need(d, "shift", what)

        def paired(key: str) -> PairedShift | None:
            raw = d.get(key)
            return None if raw is None else PairedShift.from_dict(raw, f"{what}.{key}")

        return cls(models={str(k): BalancedSide.from_dict(v, f"{what}.models.{k}") for k, v in models.items()},
                   shift=paired("shift"), control_shift=paired("control_shift"),
                   excess_over_control=paired("excess_over_control"),
                   score=None if d.get("score") is None else str(d["score"]),
                   n_items=_opt(d.get("n_items"), _int, f"{what}.n_items"),
                   seed=_opt(d.get("seed"), _int, f"{what}.seed"))


# ---------------------------------------------------------------------------------------------- items
@dataclass(frozen=True)
class BehaviourItemRow:
    """One kept item of one model. A/B mode: ``id``, the question, ``score`` = P(matching letter), ``misaligned``
    (score > 0.5) and the balanced score (None when not finite); judge mode: the question, the sampled ``answer``,
    ``score`` = the aligned rating, its ``coherent`` rating and ``misaligned``."""

    question: str
    model: str
    score: float | None
    misaligned: bool | None
    id: str | None = None
    balanced_score: float | None = None
    answer: str | None = None
    coherent: float | None = None

    @property
    def judged(self) -> bool:
        return self.answer is not None

    def to_dict(self) -> dict[str, Any]:
        if self.judged:
            return {"question": self.question, "answer": self.answer, "model": self.model, "score": self.score,
                    "coherent": self.coherent, "misaligned": self.misaligned}
        out: dict[str, Any] = {} if self.id is None else {"id": self.id}
        out.update(question=self.question, model=self.model, score=self.score, misaligned=self.misaligned,
                   balanced_score=self.balanced_score)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> BehaviourItemRow:
        d = _obj(data, "behavioural item")
        misaligned = d.get("misaligned")
        return cls(question=str(d.get("question", "")), model=str(d.get("model", "")),
                   score=_opt(d.get("score"), _num, "behavioural item score"),
                   misaligned=misaligned if isinstance(misaligned, bool) else None,
                   id=None if d.get("id") is None else str(d["id"]),
                   balanced_score=_opt(d.get("balanced_score"), _num, "behavioural item balanced_score"),
                   answer=None if d.get("answer") is None else str(d["answer"]),
                   coherent=_opt(d.get("coherent"), _num, "behavioural item coherent"))


# ---------------------------------------------------------------------------------------------- blocks
def _rates(data: Any, what: str) -> dict[str, RateSummary]:
    return {str(k): RateSummary.from_dict(v, f"{what}.{k}") for k, v in _obj(data, what).items()}


@dataclass(frozen=True)
class BehaviouralBlock:
    """The A/B block of one trait: each model's single-order rate (``models``), the balanced scores and the kept
    items (``items``; a block inside ``traits`` is written without them)."""

    trait: str
    models: Mapping[str, RateSummary]
    balanced: BalancedScores
    items: tuple[BehaviourItemRow, ...] = ()
    open: BalancedScores | None = None

    def __post_init__(self) -> None:
        _typed_values(self.models, RateSummary, f"behavioural {self.trait!r} models")
        object.__setattr__(self, "models", _frozen(self.models))
        if not isinstance(self.balanced, BalancedScores):
            raise ConfigError(bad_value("behavioural balanced", type(self.balanced).__name__, "BalancedScores"))
        if self.open is not None and not isinstance(self.open, BalancedScores):
            raise ConfigError(bad_value("behavioural open", type(self.open).__name__, "BalancedScores or None"))
        if not all(isinstance(it, BehaviourItemRow) for it in self.items):
            raise ConfigError(bad_value("behavioural items", [type(it).__name__ for it in self.items],
                                        "BehaviourItemRow records"))

    def to_dict(self, *, items: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": "ab_probability", "judge": None, "trait": self.trait,
                               "models": {k: v.to_dict() for k, v in self.models.items()}}
        if items:
            out["items"] = [it.to_dict() for it in self.items]
        out["balanced"] = self.balanced.to_dict()
        if self.open is not None:
            out["open"] = self.open.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any, trait: str = "") -> BehaviouralBlock:
        what = f"behavioural.traits.{trait}" if trait else "behavioural block"
        d = _obj(data, what)
        return cls(trait=str(d.get("trait") or trait), models=_rates(_need(d, "models", what), f"{what}.models"),
                   balanced=BalancedScores.from_dict(_need(d, "balanced", what), f"{what}.balanced"),
                   items=tuple(BehaviourItemRow.from_dict(it) for it in d.get("items") or ()),
                   open=None if d.get("open") is None else BalancedScores.from_dict(d["open"], f"{what}.open"))


@dataclass(frozen=True)
class BehaviouralSection:
    """The gate's ``behavioural`` report section.

    ``mode`` ``ab_probability``: the top-level fields are the first trait's block (``trait``, ``models``,
    ``items``, ``balanced``) and ``traits`` holds every trait's block (:meth:`ab`). ``mode`` ``judge``: ``judge``
    names the judge, ``models`` holds its rates, ``items`` the judged answers; ``traits`` the A/B blocks the
    balanced checks read (None when no balanced check asked for them). The blocks in ``traits`` carry no items
    (they are dropped on the way in, as report.json keeps them once, at the top)."""

    mode: str
    models: Mapping[str, RateSummary]
    items: tuple[BehaviourItemRow, ...] = ()
    judge: str | None = None
    trait: str | None = None
    balanced: BalancedScores | None = None
    traits: Mapping[str, BehaviouralBlock] | None = None

    def __post_init__(self) -> None:
        if self.mode not in BEHAVIOURAL_MODES:
            raise ConfigError(bad_value("behavioural.mode", self.mode, BEHAVIOURAL_MODES))
        _typed_values(self.models, RateSummary, "behavioural.models")
        object.__setattr__(self, "models", _frozen(self.models))
        if not all(isinstance(it, BehaviourItemRow) for it in self.items):
            raise ConfigError(bad_value("behavioural.items", [type(it).__name__ for it in self.items],
                                        "BehaviourItemRow records"))
        if self.balanced is not None and not isinstance(self.balanced, BalancedScores):
            raise ConfigError(bad_value("behavioural.balanced", type(self.balanced).__name__, "BalancedScores"))
        if self.traits is not None:
            _typed_values(self.traits, BehaviouralBlock, "behavioural.traits")
            # report.json keeps the kept items once, at the top: the blocks in ``traits`` hold none
            object.__setattr__(self, "traits", _frozen({t: dataclasses.replace(b, items=()) if b.items else b
                                                        for t, b in self.traits.items()}))

    @classmethod
    def ab(cls, blocks: Mapping[str, BehaviouralBlock]) -> BehaviouralSection:
        """The A/B-mode section of several traits' blocks: the first trait's block at the top, all in ``traits``."""
        if not blocks:
            raise ConfigError(bad_value("behavioural traits", [], "at least one trait's A/B block"))
        first = next(iter(blocks.values()))
        return cls(mode="ab_probability", models=first.models, items=first.items, trait=first.trait,
                   balanced=first.balanced, traits=blocks)

    def with_traits(self, blocks: Mapping[str, BehaviouralBlock]) -> BehaviouralSection:
        """This section with ``traits`` set to ``blocks`` (a judge-mode section keeping the A/B blocks)."""
        return BehaviouralSection(mode=self.mode, models=self.models, items=self.items, judge=self.judge,
                                  trait=self.trait, balanced=self.balanced, traits=blocks)

    def block(self, trait: str) -> BehaviouralBlock | None:
        return None if self.traits is None else self.traits.get(trait)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "judge": self.judge}
        if self.trait is not None:
            out["trait"] = self.trait
        out["models"] = {k: v.to_dict() for k, v in self.models.items()}
        out["items"] = [it.to_dict() for it in self.items]
        if self.balanced is not None:
            out["balanced"] = self.balanced.to_dict()
        if self.traits is not None:
            out["traits"] = {t: b.to_dict(items=False) for t, b in self.traits.items()}
        return out

    @classmethod
    def from_dict(cls, data: Any) -> BehaviouralSection:
        d = _obj(data, "behavioural")
        traits = d.get("traits")
        return cls(mode=str(_need(d, "mode", "behavioural")), models=_rates(_need(d, "models", "behavioural"),
                                                                            "behavioural.models"),
                   items=tuple(BehaviourItemRow.from_dict(it) for it in d.get("items") or ()),
                   judge=None if d.get("judge") is None else str(d["judge"]),
                   trait=None if d.get("trait") is None else str(d["trait"]),
                   balanced=None if d.get("balanced") is None else BalancedScores.from_dict(d["balanced"]),
                   traits=None if traits is None else
                   {str(t): BehaviouralBlock.from_dict(b, str(t)) for t, b in _obj(traits, "behavioural.traits")
                    .items()})

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> BehaviouralSection | None:
        """The behavioural section of a report document (None when it has none, or an empty one)."""
        data = report.get("behavioural")
        return None if data is None or data == {} else cls.from_dict(data)

