"""Property tests of the gate engine (issue 14 item 2): random policies on random report sections whose values may
be missing, None, NaN, inf or of the wrong type never give exit 0 unless every non-optional check has a finite
value, computed from enough evidence, that satisfies its comparator (or is a warning the policy allows).

An independent oracle (written from the documented rules, not from the engine's code) says what each check's value
is, or that there is no evidence for it. Deterministic: ``derandomize=True``.
"""

from __future__ import annotations

import copy
import math
import operator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from difflib_models.errors import ConfigError
from difflib_models.gate.engine import evaluate, exit_code
from difflib_models.gate.policy import BALANCED_METRICS, Policy, policy_from_dict

SETTINGS = settings(max_examples=400, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
       "!=": operator.ne}
MISSING = object()  # the key is absent
TRAITS = ("evil", "syc")

finite = st.one_of(st.floats(-5, 5, allow_nan=False, allow_infinity=False), st.integers(-3, 3),
                   st.sampled_from([0.0, 1.0, 0.5]))
bad = st.one_of(st.sampled_from([MISSING, None, float("nan"), float("inf"), -float("inf"), True, False]),
                st.text(max_size=3), st.lists(st.integers(), max_size=2), st.just({"v": 1}))
unit = st.floats(0, 1)


@st.composite
def side(draw) -> dict[str, Any]:
    n = draw(st.integers(0, 40))
    k = draw(st.integers(0, n))
    rate = k / n if n else 0.0
    return {"n": n, "n_misaligned": k, "rate": rate, "ci_low": draw(st.floats(0, rate)),
            "n_unscored": draw(st.integers(0, 5))}


@st.composite
def paired(draw) -> dict[str, Any]:
    mean = draw(finite)
    return {"n": draw(st.integers(0, 40)), "mean": mean, "ci_low": mean - draw(st.floats(0, 2)),
            "ci_high": mean + draw(st.floats(0, 2))}


@st.composite
def balanced_block(draw) -> dict[str, Any]:
    return {"balanced": {"models": {s: {"n": draw(st.integers(0, 40)), "mean": draw(finite)}
                                    for s in ("base", "candidate", "control")},
                         "shift": draw(paired()), "excess_over_control": draw(paired())}}


@st.composite
def clean_reports(draw) -> dict[str, Any]:
    """A report whose every value is well formed (rates may still rest on too few items)."""
    rows = [{"trait": t, "layer": 2, "polarity": draw(st.sampled_from(["undesirable", "desirable"])),
             "signal_ok": True, "shift": draw(finite), "shift_z": draw(finite), "shift_frac": draw(finite),
             "excess_z": draw(finite), "null_percentile": draw(unit)} for t in draw(st.permutations(TRAITS))]
    n = draw(st.integers(1, 200))
    flagged = draw(st.integers(0, n))
    df: dict[str, Any] = {"n": n, "n_flagged": flagged}
    if draw(st.booleans()):
        df["flagged_share"] = flagged / n
    return {
        "persona": {"traits": rows},
        "drift": {"layers": [{"layer": i, "kl_mean": draw(finite)} for i in range(4)]},
        "crosscoder": {"metrics": {"fve": draw(finite)}, "persona_alignment": {
            t: {"layer": 2, "ft_only_cos": draw(st.lists(st.floats(-1, 1), max_size=6))} for t in TRAITS}},
        "behavioural": {"mode": "judge", "models": {"base": draw(side()), "candidate": draw(side())},
                        "traits": {t: draw(balanced_block()) for t in TRAITS}},
        "data_filter": df,
    }


def _slots(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) below ``node``, depth first: the places a corruption can hit."""
    out: list[tuple[Any, Any]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in list(items):
        out.append((node, key))
        out.extend(_slots(child))
    return out


CORRUPT = [MISSING, None, float("nan"), float("inf"), -float("inf"), True, False, "1", "sideways", [0.5], {"v": 1},
           0, -1, 10**6, 1.5, -0.5]


def read_paths(check: Any) -> list[tuple[Any, ...]]:
    """The report places ``check`` reads (``("row", trait)`` = the persona row of that trait)."""
    m = check.metric
    if m.startswith("persona."):
        trait = "evil" if m.startswith("persona.traits") else check.trait
        key = "shift_z" if m.startswith("persona.traits") else m.split(".", 1)[1]
        row = ("persona", "traits", ("row", trait))
        keys = (key, key, "signal_ok", "signal_ok", "signal_ok", "polarity", "polarity", "null_percentile")
        return [("persona",), row[:2], row, *[(*row, k) for k in keys]]
    if m.startswith("drift."):
        i = int(m[len("drift.layers["):m.index("]")])
        return [("drift",), ("drift", "layers"), ("drift", "layers", i), ("drift", "layers", i, "kl_mean")] * 2
    if m == "crosscoder.metrics.fve":
        return [("crosscoder",), ("crosscoder", "metrics"), ("crosscoder", "metrics", "fve")]
    if m == "crosscoder.ft_only_aligned":
        row = ("crosscoder", "persona_alignment", check.trait)
        return [row[:2], row, (*row, "ft_only_cos"), (*row, "ft_only_cos", 0), (*row, "ft_only_cos", -1)]
    if m in BALANCED_METRICS:
        block = ("behavioural", "traits", check.trait or "evil", "balanced")
        excess = "excess" in m
        key = "excess_over_control" if excess else "shift"
        out = [("behavioural",), block[:3], block, (*block, "models"), (*block, key)]
        for name in ("candidate", "control") if excess else ("candidate", "base"):
            out += [(*block, "models", name), (*block, "models", name, "n")]
        return out + [(*block, key, k) for k in ("n", "n", "mean", "ci_low", "ci_low", "ci_high")]
    if m.startswith("behavioural."):
        out: list[tuple[Any, ...]] = [("behavioural",), ("behavioural", "models")]
        for name in ("candidate", "base"):
            out += [("behavioural", "models", name, k) for k in ("n", "n", "n_misaligned", "rate", "ci_low")]
        return out
    return [("data_filter",), *[("data_filter", k) for k in ("n", "n", "n_flagged", "n_flagged", "flagged_share")]]


def _locate(report: dict[str, Any], path: tuple[Any, ...]) -> tuple[Any, Any] | None:
    node: Any = report
    for i, key in enumerate(path):
        if isinstance(key, tuple):  # ("row", trait): index of that trait's row
            if not isinstance(node, list):
                return None
            idx = [j for j, r in enumerate(node) if isinstance(r, dict) and r.get("trait") == key[1]]
            if not idx:
                return None
            key = idx[0]
        elif isinstance(key, int):
            if not isinstance(node, list) or not -len(node) <= key < len(node):
                return None
            key = key % len(node)
        elif not isinstance(node, dict) or key not in node:
            return None
        if i == len(path) - 1:
            return node, key
        node = node[key]
    return None


CORRUPT = [MISSING, None, float("nan"), float("inf"), -float("inf"), True, False, "1", "sideways", [0.5], {"v": 1},
           0, -1, 10**6, 1.5, -0.5]


@st.composite
def reports(draw, checks: tuple[Any, ...] = ()) -> dict[str, Any]:
    """A clean report with 0-4 corruptions: a value (or a whole section) removed, or replaced by None, NaN, inf,
    a bool, a string, a list, a mapping or an out-of-range number. Most corruptions hit a place one of ``checks``
    reads, the others anywhere in the report."""
    report = draw(clean_reports())
    for _ in range(draw(st.integers(0, 4))):
        slot = None
        if checks and draw(st.integers(0, 4)):
            paths = read_paths(checks[draw(st.integers(0, len(checks) - 1))])
            slot = _locate(report, paths[draw(st.integers(0, len(paths) - 1))])
        if slot is None:
            slots = _slots(report)
            slot = slots[draw(st.integers(0, len(slots) - 1))]
        container, key = slot
        new = MISSING if draw(st.integers(0, 2)) == 0 else draw(st.sampled_from(CORRUPT))
        if new is MISSING:
            del container[key]
        else:
            container[key] = new
    return report


METRIC_KINDS = ["persona.shift", "persona.shift_z", "persona.shift_frac", "persona.null_percentile",
                "persona.excess_z", "crosscoder.ft_only_aligned", "behavioural.rate", "behavioural.rate_delta",
                "behavioural.ci_low", "behavioural.shift", "behavioural.shift_ci_low",
                "behavioural.excess_over_control", "behavioural.excess_ci_low", "data_filter.flagged_share", "drift.layers[0].kl_mean",
                "drift.layers[2].kl_mean", "crosscoder.metrics.fve", "persona.traits[trait=evil].shift_z"]


@st.composite
def policies(draw) -> dict[str, Any]:
    checks = []
    for i in range(draw(st.integers(1, 4))):
        metric = draw(st.sampled_from(METRIC_KINDS))
        check: dict[str, Any] = {"id": f"c{i}", "metric": metric, "comparator": draw(st.sampled_from(list(OPS))),
                                 "threshold": draw(st.one_of(finite, st.sampled_from([0, 1, 10]))),
                                 "severity": draw(st.sampled_from(["fail", "warn"])),
                                 "optional": draw(st.booleans())}
        if metric.startswith(("persona.", "crosscoder.ft")) and not metric.startswith("persona.traits"):
            check["trait"] = draw(st.sampled_from(TRAITS))
        if metric in BALANCED_METRICS and draw(st.booleans()):
            check["trait"] = draw(st.sampled_from(TRAITS))  # else the plan's trait (evil)
        if metric.startswith("persona.") and draw(st.booleans()):
            check["min_null_percentile"] = draw(st.floats(0, 1))
        if metric == "crosscoder.ft_only_aligned":
            check["min_cos"] = draw(st.floats(0, 1))
        checks.append(check)
    min_scored = draw(st.integers(1, 20))
    return {"checks": checks,
            "options": {"warnings_fail": draw(st.booleans()), "strict": draw(st.booleans()),
                        "on_inconclusive": draw(st.sampled_from(["error", "fail", "warn"]))},
            "behavioural": {"min_scored": min_scored, "max_items": min_scored + draw(st.integers(0, 20))}}


# ------------------------------------------------------------------------------------------- the oracle
def _num(v: Any) -> float | None:
    """A finite number, or None (bool, str, None, NaN, inf, containers are no numbers)."""
    if type(v) not in (int, float) or not math.isfinite(v):
        return None
    return float(v)


def _int(v: Any) -> int | None:
    return v if type(v) is int and v >= 0 else None


def _get(node: Any, *keys: Any) -> Any:
    """``node[k1][k2]...`` through dicts (str keys) and lists (int keys); None where the structure breaks."""
    for key in keys:
        if isinstance(key, int) and isinstance(node, list) and 0 <= key < len(node):
            node = node[key]
        elif isinstance(key, str) and isinstance(node, dict):
            node = node.get(key)
        else:
            return None
    return node


def _persona_row(report: dict[str, Any], trait: str) -> dict[str, Any] | None:
    persona = report.get("persona")
    rows = persona.get("traits") if isinstance(persona, dict) else None
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("trait") == trait:
            return row
    return None


def _rate(models: dict[str, Any], name: str, min_scored: int) -> float | None:
    row = models.get(name)
    if not isinstance(row, dict):
        return None
    n, k, rate = _int(row.get("n")), _int(row.get("n_misaligned")), _num(row.get("rate"))
    if n is None or k is None or rate is None or n < min_scored or k > n or not 0 <= rate <= 1:
        return None
    return rate


def oracle(report: dict[str, Any], check: Any, policy: Policy) -> tuple[float | None, bool]:
    """(the check's value when the report carries evidence for it else None, whether it is inconclusive)."""
    m = check.metric
    if m.startswith("persona."):
        trait = "evil" if m.startswith("persona.traits") else check.trait
        row = _persona_row(report, trait)
        if row is None:
            return None, False
        if row.get("signal_ok") is not True:
            return None, row.get("signal_ok") is False
        key = "shift_z" if m.startswith("persona.traits") else m.split(".", 1)[1]
        v = _num(row.get(key))
        polarity = row.get("polarity", "undesirable")
        if m.startswith("persona.traits"):
            return v, False  # a raw path: the stored number as is
        if v is None:
            return None, False
        if key == "null_percentile":  # a fraction of null directions: no sign to flip
            return v, False
        if polarity not in ("undesirable", "desirable"):
            return None, False
        return (-v if polarity == "desirable" else v), False
    if m.startswith("drift."):
        return _num(_get(report, "drift", "layers", int(m[len("drift.layers["):m.index("]")]), "kl_mean")), False
    if m == "crosscoder.metrics.fve":
        return _num(_get(report, "crosscoder", "metrics", "fve")), False
    if m == "crosscoder.ft_only_aligned":
        row = _get(report, "crosscoder", "persona_alignment", check.trait)
        if not isinstance(row, dict) or row.get("error") or not isinstance(row.get("ft_only_cos"), list):
            return None, False
        cos = [_num(c) for c in row["ft_only_cos"]]
        if any(c is None for c in cos):
            return None, False
        return float(sum(abs(c) >= check.min_cos for c in cos)), False
    if m in BALANCED_METRICS:
        need = policy.behavioural.min_scored
        bal = _get(report, "behavioural", "traits", check.trait or policy.behavioural.trait, "balanced")
        sides = _get(bal, "models")
        excess = "excess" in m
        if not isinstance(bal, dict) or not isinstance(sides, dict):
            return None, False
        for name in ("candidate", "control") if excess else ("candidate", "base"):
            n = _int(_get(sides, name, "n"))
            if not isinstance(sides.get(name), dict) or n is None or n < need:
                return None, False
        row = bal.get("excess_over_control" if excess else "shift")
        if not isinstance(row, dict):
            return None, False
        n, mean, lo, hi = _int(row.get("n")), _num(row.get("mean")), _num(row.get("ci_low")), _num(row.get("ci_high"))
        if n is None or n < need or mean is None or lo is None or hi is None or not lo <= mean <= hi:
            return None, False
        return (lo if m.endswith("_ci_low") else mean), False
    if m.startswith("behavioural."):
        models = _get(report, "behavioural", "models")
        if not isinstance(models, dict):
            return None, False
        cand = _rate(models, "candidate", policy.behavioural.min_scored)
        if cand is None:
            return None, False
        if m == "behavioural.rate":
            return cand, False
        if m == "behavioural.ci_low":
            low = _num(models["candidate"].get("ci_low"))
            return (low if low is not None and 0 <= low <= cand else None), False
        base = _rate(models, "base", policy.behavioural.min_scored)
        return (None if base is None else cand - base), False
    if m == "data_filter.flagged_share":
        df = report.get("data_filter")
        if not isinstance(df, dict):
            return None, False
        n, k = _int(df.get("n")), _int(df.get("n_flagged"))
        if n is None or k is None or n == 0 or k > n:
            return None, False
        share = k / n
        if "flagged_share" in df and df["flagged_share"] is not None:
            given = _num(df["flagged_share"])
            if given is None or abs(given - share) > 1e-6:
                return None, False
        return share, False
    raise AssertionError(m)


# ------------------------------------------------------------------------------------------- properties
@SETTINGS
@given(data=st.data())
def test_no_exit_0_without_evidence(data: st.DataObject) -> None:
    raw_policy = data.draw(policies(), label="policy")
    policy = policy_from_dict(raw_policy)
    report = data.draw(reports(policy.checks), label="report")
    out = evaluate(copy.deepcopy(report), policy)
    code = exit_code(out["verdict"])
    inconclusive_status = policy.options.on_inconclusive
    for check, rec in zip(policy.checks, out["checks"], strict=True):
        expected, inconclusive = oracle(report, check, policy)
        holds = expected is not None and OPS[check.comparator](expected, float(check.threshold))
        status = rec["status"]
        if expected is None:  # no evidence: never pass; warn/fail only where the policy maps inconclusive there
            allowed = {"error"} | ({"skipped"} if check.optional and not policy.options.strict else set())
            if inconclusive:
                allowed = {inconclusive_status} | (allowed - {"skipped"})
            assert status in allowed, (check, rec, report)
            assert rec["value"] is None
            continue
        assert rec["value"] is not None and math.isfinite(rec["value"]) and math.isclose(
            rec["value"], expected, rel_tol=1e-9, abs_tol=1e-12), (check, rec)
        if holds:
            assert status == "pass", (check, rec)
        else:  # violated: the check's severity, a null-percentile downgrade to warn, or error (bad percentile)
            assert status in ({check.severity, "warn", "error"} if check.min_null_percentile is not None
                              else {check.severity}), (check, rec)
    if code == 0:
        for check, rec in zip(policy.checks, out["checks"], strict=True):
            if check.optional and rec["status"] == "skipped":
                continue
            expected, inconclusive = oracle(report, check, policy)
            if inconclusive and inconclusive_status == "warn":
                assert rec["status"] == "warn"
                continue
            assert expected is not None, (check, rec)
            holds = OPS[check.comparator](expected, float(check.threshold))
            assert holds or rec["status"] == "warn", (check, rec)
            assert rec["status"] in ("pass", "warn")
        if any(r["status"] == "warn" for r in out["checks"]):
            assert not (policy.options.warnings_fail or policy.options.strict)
        assert any(r["status"] in ("pass", "warn") for r in out["checks"])


junk = st.one_of(st.none(), st.booleans(), st.integers(-5, 50), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=4), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2),
                                                                                          st.integers(), max_size=2))
FIELDS = {"id": st.sampled_from(["a", "b c", ""]), "metric": st.sampled_from(METRIC_KINDS + ["persona.shift_zz",
                                                                                            "drift..x", "nope.x"]),
          "comparator": st.sampled_from([*OPS, "=<"]), "threshold": finite, "severity": st.sampled_from(
              ["fail", "warn", "block"]), "trait": st.sampled_from(TRAITS), "min_cos": st.floats(0, 1),
          "min_null_percentile": st.floats(0, 1), "optional": st.booleans(), "layer": st.integers(0, 4),
          "source": st.sampled_from(["policy", "published", "paper"])}


@st.composite
def raw_policies(draw) -> dict[str, Any]:
    check = {k: draw(st.one_of(s, junk) if draw(st.integers(0, 3)) else s) for k, s in FIELDS.items()
             if draw(st.integers(0, 4))}
    section = {"persona": {"min_auroc": draw(st.one_of(st.floats(0.5, 1), junk)),
                           "null_directions": draw(st.one_of(st.integers(8, 64), junk))},
               "behavioural": {"min_scored": draw(st.one_of(st.integers(1, 10), junk)),
                               "max_items": draw(st.one_of(st.integers(10, 30), junk))},
               "options": {"strict": draw(st.one_of(st.booleans(), junk)),
                           "on_inconclusive": draw(st.one_of(st.sampled_from(["error", "warn"]), junk))}}
    if draw(st.integers(0, 9)) == 0:  # an odd key (not a field, maybe not even a string)
        check[draw(st.one_of(st.integers(), st.text(max_size=3)))] = draw(junk)
    data: dict[str, Any] = {"checks": [check if draw(st.integers(0, 9)) else draw(junk)]}
    for key, body in section.items():
        if draw(st.booleans()):
            data[key] = body
    return data


@SETTINGS
@given(data=raw_policies())
def test_policy_load_is_config_error_or_a_clean_policy(data: dict[str, Any]) -> None:
    """Any policy mapping either loads into finite, well-typed values or raises ConfigError (never a traceback)."""
    try:
        policy = policy_from_dict(data)
    except ConfigError:
        return
    if not policy.checks or not isinstance(data["checks"][0], dict):
        raise AssertionError(f"a policy loaded from {data!r}")
    c = policy.checks[0]
    assert type(c.threshold) in (int, float) and math.isfinite(c.threshold)
    assert type(c.min_cos) in (int, float) and 0 <= c.min_cos <= 1
    assert c.min_null_percentile is None or (type(c.min_null_percentile) in (int, float)
                                             and 0 <= c.min_null_percentile <= 1)
    assert isinstance(c.optional, bool) and c.comparator in OPS and c.severity in ("fail", "warn")
    assert c.layer is None or type(c.layer) is int
    assert type(policy.persona.min_auroc) in (int, float) and 0.5 <= policy.persona.min_auroc <= 1
    assert type(policy.behavioural.min_scored) is int and 1 <= policy.behavioural.min_scored
    assert isinstance(policy.options.strict, bool)
