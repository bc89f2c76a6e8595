"""junit.xml and report.md stay valid machine outputs whatever text a model name, token or message holds.

Issue 14 item 7: a control character in a model name or token made junit.xml unparseable (ElementTree: not
well-formed). A hypothesis fuzz test feeds random unicode (control characters, lone surrogates, U+FFFE/U+FFFF,
Markdown and XML syntax included) into names, ids, metrics, messages, notes and tokens.
"""

from __future__ import annotations

import copy
import html
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from difflib_models.report.junit import render_junit, write_junit, xml_safe
from difflib_models.report.markdown import render_markdown
from tests.report.synthetic import synthetic_report

NASTY = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x85", "\ud800", "\udfff",
         "\ufffe", "\uffff", "\u2028", "\u2029", "\t", "\r", "\n", "\r\n", "|", "\\", "\\|", "`", "*", "<", ">",
         "&", '"', "'", "]]>", "<!--", "&#0;", "\U0001f600", "\u00e9", "\u202e"]
# every code point, surrogates and unassigned ones included, with the nasty ones much more often than by chance
TEXT = st.lists(st.one_of(st.characters(codec=None, categories=None), st.sampled_from(NASTY)), max_size=40).map(
    "".join)
FUZZ = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def _xml_char(c: str) -> bool:
    """The XML 1.0 Char production, written out independently of the code under test."""
    n = ord(c)
    return n in (0x9, 0xA, 0xD) or 0x20 <= n <= 0xD7FF or 0xE000 <= n <= 0xFFFD or 0x10000 <= n <= 0x10FFFF


def _expected_xml(text: str) -> str:
    return "".join(c if _xml_char(c) else "\ufffd" for c in text)


def _fuzzed_report(names: dict[str, Any]) -> dict[str, Any]:
    report = copy.deepcopy(synthetic_report(n_latents=3))
    report["models"]["base"]["name"] = names["base"]
    report["models"]["candidate"]["name"] = names["candidate"]
    report["title"] = names["title"]
    report["verdict_reason"] = names["reason"]
    report["notes"] = [names["note"]]
    for check, (cid, metric, message) in zip(report["checks"], names["checks"], strict=False):
        check["id"], check["metric"] = cid, metric
        check["details"] = {"message": message}
    report["persona"]["traits"][0]["trait"] = names["trait"]
    report["crosscoder"]["top_latents"][0]["contexts"][0]["tokens"] = names["tokens"]
    return report


NAMES = st.fixed_dictionaries({
    "base": TEXT, "candidate": TEXT, "title": TEXT, "reason": TEXT, "note": TEXT, "trait": TEXT,
    "tokens": st.lists(TEXT, min_size=1, max_size=5),
    "checks": st.lists(st.tuples(TEXT, TEXT, TEXT), min_size=5, max_size=5),
})


@FUZZ
@given(NAMES)
def test_junit_always_parses_and_keeps_the_text(names: dict[str, Any]) -> None:
    report = _fuzzed_report(names)
    root = ET.fromstring(render_junit(report).encode("utf-8"))  # as a CI system reads the file: UTF-8 bytes
    suite = root.find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["base_model"] == _expected_xml(names["base"])
    assert props["candidate_model"] == _expected_xml(names["candidate"])
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [_expected_xml(cid) for cid, _, _ in names["checks"]]
    for case, (_, _, message) in zip(cases, names["checks"], strict=True):
        outcome = case.find("failure") if case.find("failure") is not None else case.find("error")
        if outcome is None:
            outcome = case.find("skipped")
        if outcome is not None and message:  # an empty message falls back to the check's description
            assert outcome.get("message") == _expected_xml(message)


def test_junit_control_characters_in_model_name_and_token(tmp_path: Path) -> None:
    report = synthetic_report(n_latents=2)
    report["models"]["candidate"]["name"] = "cand\x00\x1b[31m\ud800name"
    report["checks"][0]["id"] = "evil\x07shift"
    path = write_junit(report, tmp_path / "junit.xml")
    root = ET.parse(path).getroot()  # raised "not well-formed" before
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["candidate_model"] == "cand\ufffd\ufffd[31m\ufffdname"
    assert root.find("testsuite/testcase").get("name") == "evil\ufffdshift"


def test_xml_safe_keeps_allowed_text() -> None:
    text = "tab\tnl\nret\r caf\u00e9 \U0001f600 \u2028 \x85 <&>\"'"
    assert xml_safe(text) == text
    assert xml_safe("\x00\x1f\ud800\ufffe\uffff") == "\ufffd" * 5


# ------------------------------------------------------------------------------------------------ markdown
_UNESCAPED_PIPE = re.compile(r"(?<!\\)((?:\\\\)*)\|")


def _cells(row: str) -> list[str]:
    """Split a table row at the pipes that are not backslash-escaped."""
    parts = _UNESCAPED_PIPE.split(row)
    # re.split with one group: [text, backslashes, text, backslashes, ...]; glue the even backslashes back
    cells, cur = [], parts[0]
    for i in range(1, len(parts), 2):
        cells.append(cur + parts[i])
        cur = parts[i + 1]
    cells.append(cur)
    return [c.strip(" ") for c in cells[1:-1]]


def _md_unescape(cell: str) -> str:
    return html.unescape(re.sub(r"\\(.)", r"\1", cell))


def _expected_md(text: str) -> str:
    breaks = "\n\r\t\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
    out = []
    for c in text:
        n = ord(c)
        if c in breaks:
            out.append(" ")
        elif n < 0x20 or 0x7F <= n <= 0x9F or 0xD800 <= n <= 0xDFFF or c in "\ufffe\uffff":
            out.append("\ufffd")
        else:
            out.append(c)
    return "".join(out)


@FUZZ
@given(NAMES)
def test_markdown_one_row_per_table_line(names: dict[str, Any]) -> None:
    report = _fuzzed_report(names)
    md = render_markdown(report)
    md.encode("utf-8")  # no lone surrogates left
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]", md)
    lines = md.split("\n")
    start = lines.index("| | check | metric | value | pass if | source |")
    rows = lines[start + 2: start + 2 + len(report["checks"])]
    assert lines[start + 2 + len(report["checks"])] == ""  # the table ends after one line per check
    for row, (cid, metric, _) in zip(rows, names["checks"], strict=True):
        cells = _cells(row)
        assert len(cells) == 6, row
        assert _md_unescape(cells[1]) == _expected_md(cid).strip(" ")
        assert _md_unescape(cells[2].removeprefix("`").removesuffix("`")) == _expected_md(metric)
    model_lines = [x for x in lines if x.startswith("- **candidate**: ")]
    assert len(model_lines) == 1
