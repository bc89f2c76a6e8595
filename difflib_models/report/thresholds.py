"""Which thresholds a report's plots draw, and which check or metric decided an outcome.

Thresholds come from the report itself when it has them (a gate report's ``policy.checks`` joined with the
evaluated ``checks`` for their status; a monitor section's own ``thresholds``), else from the shipped default
gate policy (``difflib_models/gate/default_policy.yaml``), so a plot never shows a line the report did not use
without saying so (``source`` names where each line comes from).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any

from difflib_models.files import parse_yaml
from difflib_models.report.monitor_records import MonitorSection
from difflib_models.report.records import CheckResult, GateVerdict

log = logging.getLogger(__name__)

#: the monitor metrics that have thresholds, and the PersonaMonitor threshold keys for (warn, fail)
MONITOR_KEYS = {"shift_z": ("warn_z", "fail_z"), "shift_frac": ("warn_frac", "fail_frac"),
                "response_null_z": ("warn_response_null_z", "fail_response_null_z"),
                "response_position_shift": ("warn_response_position_shift", "fail_response_position_shift")}
#: the monitor's headroom reading (``responses``): below the monitor's ``min_headroom`` a quiet response reading warns
HEADROOM_METRIC = "response_headroom"
#: thresholded monitor metrics every monitor records (the others only with an option, e.g. ``responses``)
CORE_MONITOR_KEYS = ("shift_z", "shift_frac")
_GE = {">=": "≥", "<=": "≤", "!=": "≠"}
#: the gate's shipped default policy, relative to the difflib_models package
DEFAULT_POLICY_FILE = "gate/default_policy.yaml"


@dataclass(frozen=True)
class Line:
    """One threshold line: the value a metric must not reach (``comparator`` is the condition to PASS)."""

    value: float
    severity: str  # warn | fail
    label: str  # e.g. "fail: evil-shift-z (policy)"
    check_id: str | None = None
    comparator: str = "<"
    status: str | None = None  # the evaluated check's status (gate reports only)


def symbol(comparator: str) -> str:
    return _GE.get(comparator, comparator)


def violated(comparator: str) -> str:
    """The comparator that describes a violation of ``comparator`` (the condition to pass)."""
    return {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}.get(comparator, comparator)


def policy_checks(report: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], str]:
    """The report's policy checks (gate report), else the default policy's; and a word for where they came from."""
    policy = report.get("policy") or {}
    checks = policy.get("checks") if isinstance(policy, Mapping) else None
    if isinstance(checks, list) and checks:
        return [c for c in checks if isinstance(c, Mapping)], "gate policy"
    checks = _default_checks()
    return list(checks), "default policy" if checks else "none"


@lru_cache(maxsize=1)
def _default_checks() -> tuple[Mapping[str, Any], ...]:
    """The shipped default gate policy's checks as dicts (parsed once). The report layer sits below the gate, so
    it reads the policy file as data; the gate validates that file when it loads it."""
    try:
        res = resources.files("difflib_models") / DEFAULT_POLICY_FILE
        data = parse_yaml(res.read_text(encoding="utf-8"), what="default policy", path=str(res))
        checks = data.get("checks") if isinstance(data, Mapping) else None
        return tuple(c for c in checks or [] if isinstance(c, Mapping))
    except Exception as exc:  # noqa: BLE001 - a plot without lines beats no report
        log.warning("report plots: default policy unavailable (%s); plotting without thresholds", exc)
        return ()


def _status_by_id(report: Mapping[str, Any]) -> dict[str, str]:
    return {c.id: c.status for c in GateVerdict.from_report(report).checks}


def check_lines(report: Mapping[str, Any], metric: str, trait: str | None = None) -> list[Line]:
    """Threshold lines of the policy checks on ``metric`` (for ``trait`` when given), warn before fail."""
    checks, origin = policy_checks(report)
    status = _status_by_id(report) if origin == "gate policy" else {}
    out = []
    for c in checks:
        if c.get("metric") != metric or (trait is not None and c.get("trait") not in (None, trait)):
            continue
        value = c.get("threshold")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        severity = str(c.get("severity", "fail"))
        cid = str(c.get("id"))
        out.append(Line(float(value), severity, f"{severity}: {cid} ({origin})", cid, str(c.get("comparator", "<")),
                        status.get(cid)))
    return sorted(out, key=lambda ln: (ln.severity != "warn", ln.value))


def monitor_lines(report: Mapping[str, Any], metric: str, trait: str | None = None) -> list[Line]:
    """Threshold lines for a monitor metric: the monitor's own thresholds (they decided its status; ``trait``'s own
    entry in ``thresholds.traits`` where the monitor drew lines per trait), else the policy checks on
    ``persona.<metric>``."""
    th = (report.get("monitor") or {}).get("thresholds")
    if isinstance(th, Mapping) and (metric in MONITOR_KEYS or metric == HEADROOM_METRIC):
        own = th.get("traits") if trait is not None else None
        if isinstance(own, Mapping) and isinstance(own.get(trait), Mapping):  # this trait's own lines
            th = {**th, **own[trait]}
        if metric == HEADROOM_METRIC:
            return _headroom_lines(th)
        origin = "monitor, uncalibrated" if th.get("calibrated") is False else "monitor"
        out = []
        for severity, key in zip(("warn", "fail"), MONITOR_KEYS[metric], strict=True):
            value = th.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                out.append(Line(float(value), severity, f"{severity}: {key} ({origin})", key, "<"))
        return out
    return check_lines(report, f"persona.{metric}", trait)


def _headroom_lines(th: Mapping[str, Any]) -> list[Line]:
    """The monitor's ``min_headroom`` as a warn line on ``response_headroom`` (a value BELOW it warns), only where
    the trait has a response line for the rule to qualify."""
    need = th.get("min_headroom")
    lined = any(isinstance(th.get(k), int | float) and not isinstance(th.get(k), bool)
                for m in MONITOR_KEYS if m not in CORE_MONITOR_KEYS for k in MONITOR_KEYS[m])
    if not lined or isinstance(need, bool) or not isinstance(need, int | float) or not math.isfinite(need):
        return []
    origin = "monitor, uncalibrated" if th.get("calibrated") is False else "monitor"
    return [Line(float(need), "warn", f"warn: min_headroom ({origin}; below it a quiet reading is no evidence)",
                 "min_headroom", ">=")]


def monitor_metric_lines(report: Mapping[str, Any], monitor: MonitorSection,
                         trait: str | None = None) -> dict[str, list[Line]]:
    """:func:`monitor_lines` of every thresholded monitor metric the series can show: the core ones always, the
    others (``response_null_z``) only where a series recorded a value, and ``response_headroom`` only where a
    recorded value is below its ``min_headroom`` line (then the monitor warned for it)."""
    out = {m: monitor_lines(report, m, trait) for m in MONITOR_KEYS
           if m in CORE_MONITOR_KEYS or any(v is not None for s in monitor.series for v in s.values_of(m))}
    room = monitor_lines(report, HEADROOM_METRIC, trait)
    mine = [s for s in monitor.series if trait is None or s.trait == trait]
    if room and any(_crosses(v, ln) for s in mine for v in s.values_of(HEADROOM_METRIC) for ln in room):
        out[HEADROOM_METRIC] = room
    return out


def monitor_lines_by_trait(report: Mapping[str, Any], monitor: MonitorSection
                           ) -> tuple[dict[str, list[Line]], dict[str, dict[str, list[Line]]] | None]:
    """The monitor's lines for its plot and decision: ``(shared, by_trait)``. When every trait has the same lines
    (one trait, or one set of thresholds for all) ``shared`` holds them and ``by_trait`` is None; when the lines
    differ per trait (one monitor of several traits with a gate policy's lines) ``by_trait`` maps each trait to
    its own and ``shared`` keeps the metrics with no lines (the plot's panels)."""
    traits = list(dict.fromkeys(s.trait for s in monitor.series))
    per = {t: monitor_metric_lines(report, monitor, t) for t in traits}
    first = next(iter(per.values()), None)
    if first is None:
        return monitor_metric_lines(report, monitor), None
    if all(v == first for v in per.values()):
        return first, None
    metrics = list(dict.fromkeys(m for v in per.values() for m in v))
    return {m: [] for m in metrics}, per


@dataclass(frozen=True)
class Decision:
    """What decided an outcome: status, the check/threshold and the metric that crossed it, at which step."""

    status: str  # ok | warn | fail
    metric: str | None = None
    line: Line | None = None
    value: float | None = None
    step: int | None = None
    trait: str | None = None
    note: str = ""

    def text(self) -> str:
        if self.line is None or self.metric is None or self.value is None:
            return f"{self.status.upper()}: no threshold crossed"
        where = f" at step {self.step}" if self.step is not None else ""
        who = f"{self.trait} " if self.trait else ""
        return (f"{self.status.upper()}{where}: decided by {who}{self.metric} = {self.value:.3g} "
                f"{symbol(violated(self.line.comparator))} {self.line.value:g} ({self.line.check_id})"
                + (f"; {self.note}" if self.note else ""))


def _crosses(value: float | None, line: Line) -> bool:
    if value is None or not math.isfinite(value):
        return False
    ops = {"<": value < line.value, "<=": value <= line.value, ">": value > line.value, ">=": value >= line.value,
           "==": value == line.value, "!=": value != line.value}
    return not ops.get(line.comparator, True)


def monitor_decision(monitor: MonitorSection, lines: Mapping[str, Sequence[Line]],
                     by_trait: Mapping[str, Mapping[str, Sequence[Line]]] | None = None) -> Decision:
    """The monitor outcome and the metric that decided it (``by_trait``: a trait's own lines, used instead of
    ``lines`` for that trait's series; :func:`monitor_lines_by_trait`).

    With the PersonaMonitor's ``first_fail_step``/``first_warn_step`` (per trait), the step is the monitor's own and
    the metric is the one over its threshold at that step; without them, the first step where any series crosses
    a fail line (else a warn line) decides.
    """
    for severity in ("fail", "warn"):
        steps = monitor.first_step(severity)
        best: Decision | None = None
        for s in monitor.series:
            trait = s.trait
            want = steps.get(trait) if steps is not None else None
            for metric, metric_lines in (by_trait or {}).get(trait, lines).items():
                values = s.values_of(metric)
                for line in metric_lines:
                    if line.severity != severity:
                        continue
                    for step, value in zip(s.steps, values, strict=False):
                        if steps is not None and step != want:
                            continue
                        if _crosses(value, line) and (best is None or step < (best.step or 0)):
                            best = Decision(severity, metric, line, float(value), int(step), trait)
                            break
        if best is not None:
            consecutive = monitor.threshold("fail_consecutive")
            if severity == "fail" and isinstance(consecutive, int) and consecutive > 1:
                best = replace(best, note=f"a fail needs {consecutive} consecutive checks over a fail line")
            return best
        if steps is not None and any(v is not None for v in steps.values()):
            trait, step = next((t, v) for t, v in steps.items() if v is not None)
            return Decision(severity, step=int(step), trait=str(trait))
    return Decision(monitor.status if monitor.status in ("warn", "fail") else "ok")


def deciding_checks(checks: Sequence[CheckResult], metrics: Sequence[str]) -> list[CheckResult]:
    """The evaluated checks on ``metrics`` that decided: the failed ones, else the errors, else the warnings, else
    none."""
    on = [c for c in checks if c.metric in metrics]
    for status in ("fail", "error", "warn"):
        hit = [c for c in on if c.status == status]
        if hit:
            return hit
    return []


def check_text(check: CheckResult) -> str:
    """``evil-shift-frac: shift_frac = 0.31 ≥ 0.25`` for an evaluated check."""
    if check.value is None:
        return f"{check.id}: {check.status} ({check.metric_name} unavailable)"
    op = symbol(violated(check.comparator)) if check.status in ("warn", "fail") else symbol(check.comparator)
    return f"{check.id}: {check.metric_name} = {float(check.value):.3g} {op} {float(check.threshold or 0):g}"
