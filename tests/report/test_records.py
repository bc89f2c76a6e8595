"""The gate's typed records: exact JSON form, read-back, refusal of malformed rows."""

from __future__ import annotations

import json

import pytest

from difflib_models.errors import ConfigError
from difflib_models.report.builder import attach_verdict, new_report
from difflib_models.report.records import CheckDetails, CheckResult, GateVerdict, PersonaRow, PersonaSection
from difflib_models.report.schema import validate_report
from tests.report.synthetic import rich_report


def test_check_rows_read_back_and_write_exactly_as_stored() -> None:
    report = rich_report()
    verdict = GateVerdict.from_report(report)
    assert [c.to_dict() for c in verdict.checks] == report["checks"]
    assert list(verdict.checks[0].to_dict()) == list(report["checks"][0])  # key order too
    counts = verdict.counts()
    assert sum(counts.values()) == len(report["checks"]) == len(verdict)
    assert counts["fail"] == sum(1 for c in report["checks"] if c["status"] == "fail")
    assert GateVerdict.from_report(new_report("diff")) == GateVerdict("none", "", ())


def test_details_keep_evidence_then_message_then_inconclusive() -> None:
    d = CheckDetails.of({"trait": "evil", "ci": [0.1, 0.2], "layer": 3}, message="m")
    assert d.get("ci") == (0.1, 0.2) and d.get("missing", "x") == "x"
    assert json.dumps(d.to_dict()) == '{"trait": "evil", "ci": [0.1, 0.2], "layer": 3, "message": "m"}'
    weak = CheckDetails.from_dict({"message": "too weak", "inconclusive": True})
    assert weak.inconclusive and weak.evidence == () and list(weak.to_dict()) == ["message", "inconclusive"]
    assert CheckDetails.from_dict(d.to_dict()) == d


def test_verdict_attaches_to_a_valid_report() -> None:
    check = CheckResult(id="z", metric="persona.shift_z", value=None, threshold=3.0, comparator="<",
                        severity="fail", status="error", source="policy",
                        details=CheckDetails.of(message="cannot evaluate: no row"))
    report = attach_verdict(new_report("gate"), GateVerdict("error", "1 check(s) could not be evaluated", (check,)),
                            {"name": "p", "checks": []})
    validate_report(report)
    assert report["checks"][0]["details"] == {"message": "cannot evaluate: no row"}
    assert GateVerdict.from_report(json.loads(json.dumps(report))).checks == (check,)


@pytest.mark.parametrize(("key", "bad", "match"), [("status", "passed", "status"), ("comparator", "=<", "comparator"),
                                                   ("source", "guess", "source"), ("value", "4", "value")])
def test_malformed_check_rows_are_refused(key: str, bad: object, match: str) -> None:
    row = rich_report()["checks"][0]
    with pytest.raises(ConfigError, match=match):
        CheckResult.from_dict({**row, key: bad})
    with pytest.raises(ConfigError, match="'id'"):
        CheckResult.from_dict({k: v for k, v in row.items() if k != "id"})
    with pytest.raises(ConfigError, match="verdict"):
        GateVerdict("maybe", "", ())


def test_persona_rows_with_and_without_a_control() -> None:
    row = PersonaRow(trait="evil", layer=2, polarity="undesirable", shift=0.5, shift_z=2.5, shift_frac=0.25,
                     null_percentile=0.99, null_shifts=(0.1, -0.2), signal_ok=True)
    out = row.to_dict()
    assert "control_shift" not in out and "excess_z" not in out and "vector_auroc" not in out
    assert out["signal_ok"] is True and "signal_note" not in out and out["null_shifts"] == [0.1, -0.2]
    ctl = PersonaRow(**{**row.__dict__, "has_control": True, "control_shift": 0.4, "control_shift_z": None})
    assert list(ctl.to_dict())[-3:] == ["control_shift", "control_shift_z", "signal_ok"]  # no excess without z
    section = PersonaSection(traits=(row, ctl))
    back = PersonaSection.from_report({"persona": json.loads(json.dumps(section.to_dict()))})
    assert back == section and back.row("evil") == row
    legacy = PersonaRow.from_dict({"trait": "evil", "layer": 2, "shift": 0.1})  # hand-written: signal unknown
    assert legacy.signal_ok is None and "signal_ok" not in legacy.to_dict()
    with pytest.raises(ConfigError, match="persona row"):
        PersonaRow.from_dict({"trait": "evil", "layer": 2})


def test_persona_row_carries_response_signals_through_json() -> None:
    from difflib_models.report.records import PersonaRow, ResponseSignals

    sig = ResponseSignals(response_shift=0.5, response_z=1.25, response_null_z=None, response_text_shift=-0.1,
                          response_text_z=-0.2)
    row = PersonaRow(trait="evil", layer=3, polarity="undesirable", shift=0.1, shift_z=0.2, shift_frac=None,
                     null_percentile=0.5, signal_ok=True, response=sig)
    data = row.to_dict()
    assert [k for k in data if k.startswith("response_")] == list(ResponseSignals.FIELDS)
    back = PersonaRow.from_dict(data)
    assert back == row
    assert back.value("response_z") == 1.25 and back.value("response_null_z") is None
    plain = PersonaRow.from_dict({k: v for k, v in data.items() if not k.startswith("response_")})
    assert plain.response is None and plain.value("response_z") is None
