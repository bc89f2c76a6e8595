"""Typed contracts across package boundaries: no ``dict[str, Any]`` for vectors, shifts, validation or gate metrics.

Three checks, read from the live code with ``inspect`` / ``typing.get_type_hints``:

1. The functions that hand gate results, persona rows and dose-response curves from one package to another take
   and return the typed records (:data:`EXPECTED`), never a mapping.
2. No public function, method or dataclass field of ``gate``, ``report`` or ``persona`` has an untyped mapping
   (``dict[str, Any]``, ``Mapping[str, Any]``, bare ``dict``; also nested, e.g. ``list[dict[str, Any]]``) in its
   signature, except the JSON edge (``to_dict``/``to_json``/``from_*`` of the records, the report document itself:
   parameters named ``report``) and the entries of :data:`ALLOWED` (each with its reason). A new function that
   passes these results as dicts fails here.
3. At run time the records refuse dicts where a record belongs.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import importlib
import inspect
import pkgutil
import types
import typing
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.models.identity import ModelIdentity
from difflib_models.persona.contracts import DoseResponseCurve, RandomDirectionControl
from difflib_models.persona.filtering.records import FilterRow, FilterSummary
from difflib_models.report import plots, thresholds
from difflib_models.report.alignment_records import AlignmentRow, CrosscoderAlignment
from difflib_models.report.behaviour_records import (
    BalancedScores,
    BehaviouralBlock,
    BehaviouralSection,
    PairedShift,
    RateSummary,
)
from difflib_models.report.builder import (
    attach_alignment,
    attach_behavioural,
    attach_data_filter,
    attach_persona,
    attach_verdict,
    new_report,
)
from difflib_models.report.diff_records import ClassCuts, DriftRow
from difflib_models.report.monitor_records import MonitorSection, MonitorSeries
from difflib_models.report.records import CheckResult, GateVerdict, PersonaRow, PersonaSection

PACKAGES = ("difflib_models.gate", "difflib_models.report", "difflib_models.persona")

#: (module, qualified name, parameter or "return") -> the record type that must appear in the annotation
EXPECTED: dict[tuple[str, str, str], type] = {
    ("difflib_models.gate.engine", "evaluate_check", "return"): CheckResult,
    ("difflib_models.gate.engine", "decide", "checks"): CheckResult,
    ("difflib_models.gate.engine", "judge", "return"): GateVerdict,
    ("difflib_models.gate.runner", "persona_section", "return"): PersonaSection,
    ("difflib_models.gate.runner", "GateResult", "outcome"): GateVerdict,
    ("difflib_models.gate.runner", "GateResult", "persona"): PersonaSection,
    ("difflib_models.report.builder", "attach_verdict", "verdict"): GateVerdict,
    ("difflib_models.report.builder", "attach_persona", "section"): PersonaSection,
    ("difflib_models.report.thresholds", "check_text", "check"): CheckResult,
    ("difflib_models.report.thresholds", "deciding_checks", "checks"): CheckResult,
    ("difflib_models.report.thresholds", "deciding_checks", "return"): CheckResult,
    ("difflib_models.report.plots", "persona_checks", "traits"): PersonaRow,
    ("difflib_models.report.plots", "persona_checks", "decided"): CheckResult,
    ("difflib_models.report.plots", "persona_checks", "checks"): CheckResult,
    ("difflib_models.report.plots", "projection_vs_null", "trait"): PersonaRow,
    ("difflib_models.persona.validation.dose_response", "dose_summary", "return"): DoseResponseCurve,
    ("difflib_models.persona.validation.dose_response", "steering_dose_response", "return"): DoseResponseCurve,
    ("difflib_models.persona.validation.dose_response", "random_direction_control", "return"):
        RandomDirectionControl,
    ("difflib_models.persona.validation.validate", "add_random_control", "curve"): DoseResponseCurve,
    ("difflib_models.persona.validation.validate", "add_random_control", "return"): DoseResponseCurve,
    ("difflib_models.persona.validation.validate", "ValidationResult", "steering"): DoseResponseCurve,
    ("difflib_models.gate.behavioural", "rate_summary", "return"): RateSummary,
    ("difflib_models.gate.behavioural", "paired_bootstrap", "return"): PairedShift,
    ("difflib_models.gate.behavioural", "evaluate_ab", "return"): BehaviouralBlock,
    ("difflib_models.gate.behavioural", "ab_section", "return"): BehaviouralSection,
    ("difflib_models.gate.behavioural", "evaluate_judge", "return"): BehaviouralSection,
    ("difflib_models.gate.runner", "behavioural_section", "return"): BehaviouralSection,
    ("difflib_models.gate.runner", "GateResult", "behavioural"): BehaviouralSection,
    ("difflib_models.report.builder", "attach_behavioural", "section"): BehaviouralSection,
    ("difflib_models.gate.alignment", "persona_alignment", "return"): CrosscoderAlignment,
    ("difflib_models.gate.alignment", "crosscoder_alignment", "return"): CrosscoderAlignment,
    ("difflib_models.gate.alignment", "crosscoder_alignment", "expected"): ModelIdentity,
    ("difflib_models.gate.alignment", "identity_problems", "expected"): ModelIdentity,
    ("difflib_models.report.builder", "attach_alignment", "alignment"): CrosscoderAlignment,
    ("difflib_models.report.thresholds", "monitor_decision", "monitor"): MonitorSection,
    ("difflib_models.report.plots", "shift_series", "series"): MonitorSeries,
    ("difflib_models.report.plots", "drift_by_layer", "layers"): DriftRow,
    ("difflib_models.report.plots", "drift_metric_keys", "rows"): DriftRow,
    ("difflib_models.report.plots", "rel_norm_histogram", "thresholds"): ClassCuts,
    ("difflib_models.report.plots", "rel_norm_histogram_counts", "thresholds"): ClassCuts,
    ("difflib_models.persona.filtering.scoring", "FilterResult", "records"): FilterRow,
    ("difflib_models.persona.filtering.scoring", "FilterResult", "summary"): FilterSummary,
    ("difflib_models.report.builder", "attach_data_filter", "summary"): FilterSummary,
}

_SECTIONS = "the diff JSON merged into a report (drift rows, crosscoder metrics, latents): JSON edge"
_PROVENANCE = "provenance / settings / identities, not a metric: JSON-shaped by design"
#: "module:qualname:parameter" (or ":return") -> why an untyped mapping is allowed there
ALLOWED: dict[str, str] = {
    "difflib_models.gate.engine:metric_value:return": "the evidence the engine collects for one check; "
                                                      "evaluate_check freezes it into CheckDetails",
    "difflib_models.gate.engine:evaluate:return": "the report document (evaluate writes the verdict into it)",
    "difflib_models.gate.runner:extraction_settings:return": _PROVENANCE,
    "difflib_models.gate.runner:persona_section:vectors": "trait id -> PersonaVectorSet (typed values)",
    "difflib_models.gate.runner:persona_section:return": "the report's data entries (trait file hashes)",
    "difflib_models.gate.vector_cache:cache_key:settings": _PROVENANCE,
    "difflib_models.gate.base_cache:cache_key:settings": _PROVENANCE,
    "difflib_models.gate.base_cache:key_for:settings": _PROVENANCE,
    **{f"difflib_models.report.builder:{q}": _PROVENANCE for q in (
        "identity_dict:return", "hook_points_dict:return", "data_entry:return", "new_report:data")},
    **{f"difflib_models.report.builder:{q}": "the report document" for q in (
        "new_report:return", "attach_verdict:return", "attach_persona:return", "attach_behavioural:return",
        "attach_alignment:return", "attach_data_filter:return", "merge_diff:return",
        "load_report:return")},
    "difflib_models.report.builder:attach_verdict:policy": "the policy's own JSON form (Policy.to_dict)",
    **{f"difflib_models.report.builder:{q}": _SECTIONS for q in (
        "diff_sections:diff", "diff_sections:return", "merge_diff:diff")},
    "difflib_models.report.builder:monitor_section:return": "builds the report's monitor JSON from a monitor file "
                                                           "(JSON edge); its readers take MonitorSection",
    "difflib_models.report.names:display_name:identity": _PROVENANCE,
    "difflib_models.report.thresholds:policy_checks:return": "the policy's check specs as the report stores them",
    "difflib_models.persona.extraction.vectors:PersonaVectorSet.metadata:return": "the sidecar JSON (file edge)",
    "difflib_models.persona.extraction.vectors:identity_dict:return": _PROVENANCE,
    "difflib_models.persona.extraction.vectors:check_identity:stored": _PROVENANCE,
    "difflib_models.persona.filtering.scoring:samples_from_rows:rows": "JSONL rows of a user's data file",
    "difflib_models.persona.filtering.records:FilterSummary:extra": "what a summary.json holds beyond the typed "
                                                                    "metrics (model identity, config, filter-"
                                                                    "validation provenance, user keys), verbatim",
    "difflib_models.persona.extraction.vectors:PersonaVectorSet:extra": "free-form sidecar metadata (file edge)",
    "difflib_models.persona.traits.schema:Trait:judge": "the trait file's judge settings, as written by the user",
    "difflib_models.report.records:CheckDetails.of:evidence": "the engine's collected evidence, frozen into the "
                                                              "record on the way in",
}
#: methods that ARE the JSON edge of a record
EDGE_METHODS = {"to_dict", "to_json", "from_dict", "from_json", "from_report", "metadata_json"}


#: names that modules import only under TYPE_CHECKING, for resolving their annotations
_TYPE_CHECKING_NAMES = {"torch": torch, "np": np}


def _hints(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(obj, localns=_TYPE_CHECKING_NAMES)


def _untyped_mapping(tp: Any) -> bool:
    """Whether ``tp`` is, or contains, a mapping with ``Any`` (or unparameterised) values."""
    if tp in (dict, cabc.Mapping, cabc.MutableMapping, typing.Dict, typing.Mapping):  # noqa: UP006
        return True
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (dict, cabc.Mapping, cabc.MutableMapping) and (not args or args[-1] is Any):
        return True
    return any(_untyped_mapping(a) for a in args if a is not Ellipsis)


def _modules() -> Iterator[types.ModuleType]:
    for name in PACKAGES:
        pkg = importlib.import_module(name)
        yield pkg
        for info in pkgutil.walk_packages(pkg.__path__, name + "."):
            yield importlib.import_module(info.name)


def _signatures() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(module, qualified name, {parameter or 'return' or field: annotation}) of every public function, method and
    dataclass defined in the three packages."""
    for mod in _modules():
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isfunction(obj):
                yield mod.__name__, name, _hints(obj)
            elif inspect.isclass(obj):
                if dataclasses.is_dataclass(obj):
                    hints = _hints(obj)
                    yield mod.__name__, name, {f.name: hints[f.name] for f in dataclasses.fields(obj)}
                for meth_name, meth in vars(obj).items():
                    fn = meth.__func__ if isinstance(meth, classmethod | staticmethod) else meth
                    if inspect.isfunction(fn) and not meth_name.startswith("_") and meth_name not in EDGE_METHODS:
                        yield mod.__name__, f"{name}.{meth_name}", _hints(fn)


def _mentions(tp: Any, record: type) -> bool:
    return tp is record or any(_mentions(a, record) for a in typing.get_args(tp))


def test_boundary_functions_take_and_return_the_typed_records() -> None:
    hints = {(m, q): h for m, q, h in _signatures()}
    for (module, qualname, slot), record in EXPECTED.items():
        assert (module, qualname) in hints, f"{module}.{qualname} is gone: update EXPECTED"
        tp = hints[(module, qualname)].get(slot)
        assert tp is not None, f"{module}.{qualname}: `{slot}` is not annotated"
        assert _mentions(tp, record), f"{module}.{qualname}: `{slot}` is {tp}, not a {record.__name__}"
        if f"{module}:{qualname}:{slot}" not in ALLOWED:
            assert not _untyped_mapping(tp), f"{module}.{qualname}: `{slot}` accepts an untyped mapping ({tp})"


def test_no_untyped_mapping_crosses_gate_report_or_persona() -> None:
    offenders = []
    for module, qualname, hints in _signatures():
        for slot, tp in hints.items():
            key = f"{module}:{qualname}:{slot}"
            if slot == "report" or key in ALLOWED or not _untyped_mapping(tp):
                continue
            offenders.append(f"{key} -> {tp}")
    assert not offenders, ("untyped mappings in signatures (use a typed record; or, for a JSON edge, add it to "
                           "ALLOWED with the reason):\n" + "\n".join(offenders))
    stale = set(ALLOWED) - {f"{m}:{q}:{s}" for m, q, h in _signatures() for s in h}
    assert not stale, f"ALLOWED names signatures that no longer exist: {sorted(stale)}"


def test_the_scan_sees_a_planted_dict_signature() -> None:
    """The detector itself: the shapes someone would write when passing dicts again."""
    assert _untyped_mapping(dict[str, Any]) and _untyped_mapping(cabc.Mapping[str, Any])
    assert _untyped_mapping(list[dict[str, Any]]) and _untyped_mapping(cabc.Sequence[cabc.Mapping[str, Any]] | None)
    assert _untyped_mapping(tuple[float, dict[str, Any]]) and _untyped_mapping(dict)
    assert not _untyped_mapping(cabc.Mapping[int, DoseResponseCurve]) and not _untyped_mapping(tuple[CheckResult, ...])


ROW = {"id": "z", "metric": "persona.shift_z", "value": 4.0, "threshold": 3.0, "comparator": "<",
       "severity": "fail", "status": "fail", "source": "policy", "description": "", "details": {"message": "m"}}


def test_records_refuse_dicts_at_run_time() -> None:
    check = CheckResult.from_dict(ROW)
    assert thresholds.check_text(check) == "z: shift_z = 4 ≥ 3"
    with pytest.raises(AttributeError):
        thresholds.check_text(ROW)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        thresholds.deciding_checks([ROW], ["persona.shift_z"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="CheckResult"):
        GateVerdict("fail", "1 check(s) failed", (ROW,))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="CheckDetails"):
        CheckResult(**{**ROW, "details": {"message": "m"}})
    with pytest.raises(ConfigError, match="GateVerdict"):
        attach_verdict(new_report("gate"), {"verdict": "fail", "checks": [ROW]})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="PersonaSection"):
        attach_persona(new_report("gate"), {"traits": []})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="PersonaRow"):
        PersonaSection(traits=({"trait": "evil", "layer": 1, "shift": 0.1},))  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        plots.projection_vs_null({"trait": "evil", "layer": 1, "shift": 0.1})  # type: ignore[arg-type]


RATE = {"n": 24, "n_misaligned": 3, "rate": 0.125, "ci_low": 0.04, "ci_high": 0.31}


def test_behavioural_records_refuse_dicts_at_run_time() -> None:
    rate = RateSummary.from_dict(RATE)
    with pytest.raises(ConfigError, match="RateSummary"):
        BehaviouralSection(mode="judge", models={"candidate": RATE})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="BalancedScores"):
        BehaviouralBlock(trait="evil", models={"candidate": rate}, balanced={"models": {}})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="PairedShift"):
        BalancedScores(models={}, shift={"n": 1, "mean": 0.0, "ci_low": 0.0, "ci_high": 0.0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="BehaviouralBlock"):
        BehaviouralSection(mode="judge", models={}, traits={"evil": {"models": {}}})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="BehaviouralSection"):
        attach_behavioural(new_report("gate"), {"mode": "judge", "models": {}})  # type: ignore[arg-type]


def test_alignment_records_refuse_dicts_at_run_time() -> None:
    from difflib_models.gate.alignment import identity_problems

    row = {"layer": 2, "ft_only_threshold": 0.9, "ft_only_latents": [1], "ft_only_cos": [0.5]}
    assert CrosscoderAlignment.from_dict({"evil": row}).row("evil") == AlignmentRow(2, 0.9, (1,), (0.5,))
    with pytest.raises(ConfigError, match="AlignmentRow"):
        CrosscoderAlignment({"evil": row})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="CrosscoderAlignment"):
        attach_alignment(new_report("gate"), {"evil": row})  # type: ignore[arg-type]
    ident = {"name": "b", "source": "hf_dir", "path": None, "weight_hash": "sha256:1"}
    problems = identity_problems([ident, ident], {"base": ident, "candidate": ident})  # type: ignore[dict-item]
    assert len(problems) == 2 and all("no identity" in p for p in problems)  # a dict is not a ModelIdentity


def test_monitor_readers_refuse_dicts_at_run_time() -> None:
    section = MonitorSection.from_dict({"series": [{"trait": "evil", "layer": 2, "steps": [0, 5],
                                                    "values": [0.1, 4.0], "metric": "shift_z"}],
                                        "thresholds": {"fail_z": 3.0}, "first_fail_step": {"evil": 5}})
    line = thresholds.Line(3.0, "fail", "fail: fail_z", "fail_z", "<")
    decision = thresholds.monitor_decision(section, {"shift_z": [line]})
    assert (decision.status, decision.step, decision.value) == ("fail", 5, 4.0)
    with pytest.raises(AttributeError):
        thresholds.monitor_decision({"series": []}, {})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="MonitorSeries"):
        MonitorSection(series=({"trait": "evil"},))  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        plots.shift_series([{"trait": "evil", "steps": [0], "values": [1.0]}])  # type: ignore[list-item]


def test_data_filter_summary_is_a_record_and_round_trips_what_was_written() -> None:
    hand = {"n_flagged": 3, "note": {"a": [1, 2]}, "n": 100, "flagged_share": 0.03, "mean_delta_p": "x"}
    summary = FilterSummary.from_dict(hand)
    assert (summary.n, summary.n_flagged, summary.flagged_share) == (100, 3, 0.03)
    assert summary.mean_delta_p is None and summary.extra["mean_delta_p"] == "x"  # mistyped: kept verbatim
    assert list(summary.to_dict().items()) == list(hand.items())  # same keys, same order, same values
    assert FilterSummary.from_dict({"n_flagged": 3}).n is None  # lenient: the engine refuses it (exit 3)
    report = attach_data_filter(new_report("gate"), summary)
    assert report["data_filter"] == hand
    with pytest.raises(ConfigError, match="FilterSummary"):
        attach_data_filter(new_report("gate"), hand)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="JSON object"):
        FilterSummary.from_dict([1, 2])
    row = {"id": "a", "line": 1, "trait": "evil", "layer": 2, "proj_train": 1.5, "proj_base": 0.5, "delta_p": 1.0,
           "percentile": 80.0, "flagged": True, "method": "proxy"}
    assert FilterRow.from_dict(row).to_dict() == row and FilterRow.from_dict(row).delta_p == 1.0
    with pytest.raises(TypeError):  # records, not dicts: no reads by the files' key names
        FilterRow.from_dict(row)["delta_p"]
    with pytest.raises(TypeError):
        summary["n_flagged"]
    with pytest.raises(ConfigError, match="delta_p"):
        FilterRow.from_dict({k: v for k, v in row.items() if k != "delta_p"})
