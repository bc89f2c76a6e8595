"""PersonaMonitor thresholds read from a release-gate policy, so the live signal and the gate draw the same lines.

The monitor computes, at each check, the same last-prompt-token ``shift_z`` / ``shift_frac`` / ``null_percentile``
that the gate computes once at the end (the shift core they share). A policy's non-optional checks on
``persona.shift_z`` and ``persona.shift_frac`` of one trait map onto the monitor's thresholds: a ``fail`` check's
threshold is ``fail_z`` / ``fail_frac`` and its ``min_null_percentile`` the ``fail_null_percentile``; a ``warn``
check's threshold is ``warn_z`` / ``warn_frac``. A threshold the policy does not set is unused (None). With the
monitor's ``responses`` on, the trait's ``persona.response_null_z`` and ``persona.response_position_shift`` checks
map onto ``fail_response_null_z`` / ``warn_response_null_z`` and ``fail_response_position_shift`` /
``warn_response_position_shift`` the same way (the live readings of the candidate's own answers), and the policy's
``persona.min_headroom`` is the monitor's ``min_headroom``. Checks on other metrics
(behaviour, the excess over a control, headroom) need the gate's own measurements and have no live equivalent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from difflib_models.errors import ConfigError, bad_value

__all__ = ["PolicyThresholds", "thresholds_from_policy"]

LIVE_METRICS = {"persona.shift_z": "z", "persona.shift_frac": "frac"}
RESPONSE_LIVE_METRICS = {"persona.response_null_z": "response_null_z",
                         "persona.response_position_shift": "response_position_shift"}
"""Read live only with ``PersonaMonitor(responses=True)``."""
DEFAULT_NULL_PERCENTILE = 0.95


@dataclass(frozen=True)
class PolicyThresholds:
    thresholds: dict[str, Any]
    """warn_z, warn_frac, fail_z, fail_frac, fail_null_percentile (the monitor's keys)."""
    calibrated: bool
    """Every check used is ``source: calibrated``."""
    source: str
    """Which policy and checks the values came from."""


def thresholds_from_policy(policy: Any, trait: str, *, responses: bool = False) -> PolicyThresholds:
    """The monitor thresholds of ``trait`` from ``policy`` (a :class:`~difflib_models.gate.policy.Policy`); a
    ConfigError naming ``policy`` when the policy has no live-readable check of that trait (``responses``: the
    response checks are live-readable too)."""
    live = {**LIVE_METRICS, **(RESPONSE_LIVE_METRICS if responses else {})}
    out: dict[str, Any] = {"warn_z": None, "warn_frac": None, "fail_z": None, "fail_frac": None,
                           "fail_null_percentile": DEFAULT_NULL_PERCENTILE}
    if responses:  # the gate's headroom rule on its response checks (persona.min_headroom)
        out.update(warn_response_null_z=None, fail_response_null_z=None, warn_response_position_shift=None,
                   fail_response_position_shift=None, min_headroom=float(policy.persona.min_headroom))
    used = []
    pcts = []
    for c in policy.checks:
        if c.trait != trait or c.metric not in live or c.optional:
            continue
        if c.comparator not in ("<", "<="):
            raise ConfigError(bad_value("policy", f"{c.id}: comparator {c.comparator!r}", "'<' or '<='",
                                        "the monitor flags a shift toward the undesirable pole above a threshold"))
        key = f"{'fail' if c.severity == 'fail' else 'warn'}_{live[c.metric]}"
        if out[key] is not None:  # two checks on one line: the stricter (lower) wins
            out[key] = min(out[key], float(c.threshold))
        else:
            out[key] = float(c.threshold)
        if c.severity == "fail" and c.min_null_percentile is not None and c.metric in LIVE_METRICS:
            pcts.append(float(c.min_null_percentile))
        used.append(c)
    if not used:
        has = sorted({c.trait for c in policy.checks if c.metric in live and not c.optional and c.trait})
        answers = any(c.trait == trait and c.metric in RESPONSE_LIVE_METRICS and not c.optional
                      for c in policy.checks)
        hint = ("its checks of that trait read the candidate's answers: pass responses=True to read them live"
                if answers and not responses else
                "its other checks read behaviour or a control, which only the gate measures; monitor this trait "
                "with explicit warn_*/fail_* thresholds instead")
        what = "persona.shift_z / shift_frac" + (" / response_null_z / response_position_shift" if responses else "")
        raise ConfigError(bad_value(
            "policy", f"{getattr(policy, 'path', None) or 'policy'} for trait {trait!r}",
            f"a policy with a non-optional {what} check of that trait (this one has them for: {has})", hint))
    if pcts:
        out["fail_null_percentile"] = min(pcts)
    ids = ", ".join(f"{c.id} ({c.severity} {c.threshold:g}, {c.source})" for c in used)
    return PolicyThresholds(thresholds=out, calibrated=all(c.source == "calibrated" for c in used),
                            source=f"gate policy {getattr(policy, 'path', None) or '<default>'}: {ids}")
