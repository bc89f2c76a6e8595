"""The policy engine: evaluate a policy's checks against a report dict, and decide the verdict.

Fail-closed: a check whose metric is missing, non-numeric or non-finite is an ``error``; a persona check whose
signal is too weak for a verdict is ``inconclusive`` (status set by ``options.on_inconclusive``, ``error`` by
default); an error is never a pass. Exit codes: pass/warn 0, fail ``fail_exit_code`` (1), error or
inconclusive 3.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from difflib_models.gate.policy import (
    BEHAVIOURAL_METRICS,
    CROSSCODER_METRICS,
    DATA_FILTER_METRICS,
    PERSONA_METRICS,
    CheckSpec,
    Policy,
)

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
}
_TOKEN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(-?\d+)\]|\[([A-Za-z_]+)=([^\]]+)\]")


class MetricUnavailable(Exception):
    """A metric could not be read from the report (-> check status error or skipped)."""

    def __init__(self, message: str, *, inconclusive: bool = False) -> None:
        super().__init__(message)
        self.inconclusive = inconclusive


def resolve_path(report: Mapping[str, Any], path: str) -> Any:
    """Follow ``a.b[2].c`` / ``a.list[key=value].c`` through ``report``; raise MetricUnavailable when absent."""
    node: Any = report
    pos = 0
    walked = ""
    for match in _TOKEN_RE.finditer(path):
        if path[pos:match.start()] not in ("", "."):
            raise MetricUnavailable(f"bad path syntax near {path[pos:]!r}")
        pos = match.end()
        name, index, key, want = match.groups()
        if name is not None:
            if not isinstance(node, Mapping) or name not in node or node[name] is None:
                raise MetricUnavailable(f"`{walked + name}` is not in the report")
            node = node[name]
            walked += name + "."
        elif index is not None:
            i = int(index)
            if not isinstance(node, list) or not -len(node) <= i < len(node):
                n = len(node) if isinstance(node, list) else "not a list"
                raise MetricUnavailable(f"`{walked.rstrip('.')}[{i}]` out of range ({n})")
            node = node[i]
            walked = walked.rstrip(".") + f"[{i}]."
        else:
            found = [x for x in (node if isinstance(node, list) else []) if isinstance(x, Mapping)
                     and str(x.get(key)) == want]
            if not found:
                raise MetricUnavailable(f"no item with {key}={want} in `{walked.rstrip('.')}`")
            node = found[0]
            walked = walked.rstrip(".") + f"[{key}={want}]."
    if pos != len(path):
        raise MetricUnavailable(f"bad path syntax near {path[pos:]!r}")
    return node


def _persona_entry(report: Mapping[str, Any], check: CheckSpec) -> Mapping[str, Any]:
    persona = report.get("persona") or {}
    rows = [t for t in persona.get("traits", []) if t.get("trait") == check.trait
            and (check.layer is None or t.get("layer") == check.layer)]
    if not rows:
        raise MetricUnavailable(f"no persona shift for trait {check.trait!r}"
                                + (f" at layer {check.layer}" if check.layer is not None else ""))
    return rows[0]


def _signed(entry: Mapping[str, Any], value: float) -> float:
    """Only shifts toward the undesirable pole count: flip the sign for desirable traits."""
    return -value if entry.get("polarity") == "desirable" else value


def metric_value(report: Mapping[str, Any], check: CheckSpec) -> tuple[float, dict[str, Any]]:
    """The value of ``check.metric`` in ``report`` and details for the check record."""
    details: dict[str, Any] = {}
    m = check.metric
    if m in PERSONA_METRICS:
        entry = _persona_entry(report, check)
        details.update(trait=check.trait, layer=entry.get("layer"), null_percentile=entry.get("null_percentile"))
        if not entry.get("signal_ok", True):
            raise MetricUnavailable(f"signal too weak for a verdict on {check.trait!r}: "
                                    f"{entry.get('signal_note', 'vector failed validation')}", inconclusive=True)
        key = m.split(".", 1)[1]
        raw = entry.get(key)
        if raw is None:
            hint = " (needs --control)" if key == "excess_z" else ""
            raise MetricUnavailable(f"persona {key} not computed for {check.trait!r}{hint}")
        value = float(raw) if key == "null_percentile" else _signed(entry, float(raw))
        return value, details
    if m in CROSSCODER_METRICS:
        align = (report.get("crosscoder") or {}).get("persona_alignment") or {}
        row = align.get(str(check.trait))
        if row is None:
            raise MetricUnavailable(f"crosscoder persona alignment for {check.trait!r} not in the report "
                                    "(pass a crosscoder with --crosscoder)")
        if row.get("error"):
            raise MetricUnavailable(f"crosscoder persona alignment for {check.trait!r}: {row['error']}")
        cos = [abs(float(c)) for c in row.get("ft_only_cos", [])]
        details.update(min_cos=check.min_cos, n_ft_only=len(cos))
        return float(sum(1 for c in cos if c >= check.min_cos)), details
    if m in BEHAVIOURAL_METRICS:
        beh = report.get("behavioural") or {}
        models = beh.get("models") or {}
        if "candidate" not in models:
            raise MetricUnavailable("behavioural eval of the candidate not in the report")
        cand = models["candidate"]
        details.update(mode=beh.get("mode"), n=cand.get("n"), ci=[cand.get("ci_low"), cand.get("ci_high")])
        if m == "behavioural.rate":
            return float(cand["rate"]), details
        if m == "behavioural.ci_low":
            return float(cand["ci_low"]), details
        if "base" not in models:
            raise MetricUnavailable("behavioural eval of the base not in the report")
        details["base_rate"] = models["base"]["rate"]
        return float(cand["rate"]) - float(models["base"]["rate"]), details
    if m in DATA_FILTER_METRICS:
        df = report.get("data_filter") or {}
        if df.get("flagged_share") is None:
            if df.get("n"):
                return float(df.get("n_flagged", 0)) / float(df["n"]), details
            raise MetricUnavailable("data-filter summary not in the report (pass --data-filter)")
        return float(df["flagged_share"]), details
    raw = resolve_path(report, m)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise MetricUnavailable(f"`{m}` is {type(raw).__name__}, not a number")
    return float(raw), details


def evaluate_check(report: Mapping[str, Any], check: CheckSpec, policy: Policy) -> dict[str, Any]:
    """One check record ``{id, metric, value, threshold, comparator, severity, status, source, details}``."""
    record: dict[str, Any] = {"id": check.id, "metric": check.metric, "value": None,
                              "threshold": float(check.threshold), "comparator": check.comparator,
                              "severity": check.severity, "status": "error", "source": check.source,
                              "description": check.description, "details": {}}
    try:
        value, details = metric_value(report, check)
    except MetricUnavailable as exc:
        if exc.inconclusive:
            record["status"] = policy.options.on_inconclusive
            record["details"] = {"message": str(exc), "inconclusive": True}
        elif check.optional:
            record["status"] = "error" if policy.options.strict else "skipped"
            record["details"] = {"message": f"{exc} (optional check)"}
        else:
            record["details"] = {"message": f"cannot evaluate: {exc}"}
        return record
    record["details"] = details
    if not math.isfinite(value):
        record["details"]["message"] = f"value {value} is not finite"
        return record
    record["value"] = value
    if _OPS[check.comparator](value, float(check.threshold)):
        record["status"] = "pass"
        return record
    record["status"] = check.severity
    message = f"{check.metric} = {value:.4g} violates {check.comparator} {check.threshold:g}"
    pct = details.get("null_percentile")
    if check.severity == "fail" and check.min_null_percentile is not None and check.metric in PERSONA_METRICS:
        if pct is None:
            record["status"] = "error"
            message += "; null percentile missing, cannot tell whether the shift is specific"
        elif float(pct) < check.min_null_percentile:
            record["status"] = "warn"
            message += (f" but random directions shift as much (null percentile {float(pct):.2f} < "
                        f"{check.min_null_percentile:.2f}): not specific to the trait, downgraded to warn")
    record["details"]["message"] = message
    return record


def decide(checks: list[Mapping[str, Any]], policy: Policy) -> tuple[str, str]:
    """Overall verdict and a one-line reason from evaluated check records."""
    statuses = [c["status"] for c in checks]
    n = {s: statuses.count(s) for s in ("pass", "warn", "fail", "error", "skipped")}
    if n["fail"]:
        return "fail", f"{n['fail']} check(s) failed"
    if n["error"]:
        inconclusive = [c for c in checks if c["status"] == "error" and c["details"].get("inconclusive")]
        if len(inconclusive) == n["error"]:
            return "inconclusive", (f"{n['error']} check(s) inconclusive: the signal is too weak for a verdict "
                                    "(fail-closed: not a pass)")
        return "error", f"{n['error']} check(s) could not be evaluated (fail-closed: not a pass)"
    if n["pass"] + n["warn"] == 0:
        return "error", "no check was evaluated (fail-closed: not a pass)"
    if n["warn"]:
        if policy.options.warnings_fail or policy.options.strict:
            return "fail", f"{n['warn']} warning(s) and the policy makes warnings fail"
        return "warn", f"{n['warn']} warning(s); {n['pass']} passed"
    return "pass", f"all {n['pass']} evaluated check(s) passed" + (f", {n['skipped']} skipped" if n["skipped"] else "")


def evaluate(report: dict[str, Any], policy: Policy) -> dict[str, Any]:
    """Evaluate every check of ``policy`` on ``report``; sets ``checks``, ``verdict``, ``verdict_reason``,
    ``policy`` in the report and returns it."""
    checks = [evaluate_check(report, c, policy) for c in policy.checks]
    verdict, reason = decide(checks, policy)
    report["checks"] = checks
    report["verdict"] = verdict
    report["verdict_reason"] = reason
    report["policy"] = policy.to_dict()
    return report


def exit_code(verdict: str, *, fail_exit_code: int = EXIT_FAIL) -> int:
    """Process exit code for a verdict: pass/warn 0, fail ``fail_exit_code``, anything else 3."""
    if verdict in ("pass", "warn"):
        return EXIT_PASS
    if verdict == "fail":
        return fail_exit_code
    return EXIT_RUNTIME
