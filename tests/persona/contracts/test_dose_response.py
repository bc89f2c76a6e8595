"""Typed dose-response curves: JSON round trip, the vector-file version rule, refusal of malformed curves."""

from __future__ import annotations

import json

import pytest

from difflib_models.errors import ConfigError
from difflib_models.persona.contracts import (
    VALIDATION_SCHEMA_VERSION,
    DoseResponseCurve,
    RandomDirectionControl,
    read_steering_curves,
)
from difflib_models.persona.validation.dose_response import dose_summary

ALPHAS = [-1.0, -0.5, 0.0, 0.5, 1.0]


def _curve() -> DoseResponseCurve:
    """A measured-looking text curve with a control: dose_summary computes the trend from the numbers."""
    curve = dose_summary(ALPHAS, [0.2, 0.3, 0.4, 0.5, 0.1], [-4.0, -4.1, -4.0, -4.5, -5.5], 10.0, 5, readout="text")
    ctrl = RandomDirectionControl(n_dirs=2, seed=0, shrinkage=0.1, kind="random", span=(-1.0, 0.5),
                                  effects=(0.01, -0.02), own_effects=(0.0, 0.03), monotone=(False, False),
                                  p_matching=((0.4,) * 5, (0.41,) * 5), mean_abs_effect=0.015, max_abs_effect=0.02)
    from dataclasses import replace

    return replace(curve, positions="all", split="evaluation", mean_score_diff=(0.1, 0.2, 0.3, 0.4, 0.5),
                   length_normalize=True).with_control(ctrl, beats_control=True)


def test_dose_summary_is_a_typed_curve_with_the_trend_of_its_coherent_points() -> None:
    c = _curve()
    assert c.coherent == (True, True, True, True, False) and c.coherent_alphas == (-1.0, -0.5, 0.0, 0.5)
    assert c.monotone and c.effect == pytest.approx(0.3) and c.spearman == pytest.approx(1.0)
    summary = c.summary(3)
    assert (summary.layer, summary.effect, summary.control_max_abs_effect, summary.beats_control) == \
        (3, c.effect, 0.02, True)


def test_curve_json_round_trip_and_keys() -> None:
    c = _curve()
    data = json.loads(json.dumps(c.to_json()))
    assert list(data)[:4] == ["readout", "alphas", "p_matching", "loglik_per_token"] and "ab_mass" not in data
    assert data["control"]["span"] == [-1.0, 0.5] and data["beats_control"] is True
    assert DoseResponseCurve.from_json(data) == c
    letter = dose_summary(ALPHAS, [0.2, 0.3, 0.4, 0.5, 0.6], [0.9] * 5, 10.0, 5)
    back = DoseResponseCurve.from_json(json.loads(json.dumps(letter.to_json())))
    assert back == letter and "ab_mass" in letter.to_json() and back.control is None and back.positions is None


def test_read_steering_curves_follows_the_vector_file_version_rule() -> None:
    c = _curve()
    report = {"schema_version": VALIDATION_SCHEMA_VERSION, "steering": {"3": c.to_json()}}
    assert read_steering_curves(json.loads(json.dumps(report)), source="r.json") == {3: c}
    with pytest.raises(ConfigError, match=r"r\.json carries a validation report written before the typed"):
        read_steering_curves({"steering": {"3": c.to_json()}}, source="r.json")  # an untyped, older report
    with pytest.raises(ConfigError, match=r"newer difflib_models"):
        read_steering_curves({**report, "schema_version": VALIDATION_SCHEMA_VERSION + 1}, source="r.json")
    bad = {**c.to_json(), "monotone": "yes"}
    with pytest.raises(ConfigError, match=r"r\.json"):
        read_steering_curves({**report, "steering": {"3": bad}}, source="r.json")
    with pytest.raises(ConfigError, match="one value per alpha"):
        DoseResponseCurve.from_json({**c.to_json(), "p_matching": [0.1]})
