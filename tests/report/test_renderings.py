from __future__ import annotations

import base64
import html as html_lib
import json
import re
import xml.etree.ElementTree as ET

from difflib_models.report.html import render_html
from difflib_models.report.junit import render_junit
from difflib_models.report.markdown import md_escape, render_markdown
from tests.report.synthetic import EVIL_SCRIPT, rich_report, synthetic_report


def _png_sizes(page: str) -> list[int]:
    return [len(base64.b64decode(m)) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_html_escapes_model_and_data_text() -> None:
    page = render_html(synthetic_report())
    assert EVIL_SCRIPT not in page and "<script" not in page.lower()
    assert "<img src=x" not in page and '"><img' not in page
    assert html_lib.escape(EVIL_SCRIPT) in page
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in page  # the quote cannot close an attribute
    # every <img> on the page is one of our inline plots
    assert all(tag.startswith('<img class="plot"') for tag in re.findall(r"<img[^>]*>", page))


def test_html_is_self_contained_with_plots() -> None:
    page = render_html(synthetic_report())
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', page, re.I)
    assert "http://" not in page and "https://" not in page
    sizes = _png_sizes(page)
    # persona metrics vs thresholds, projection-vs-null (1 trait with data), monitor series, drift, rel-norm
    assert len(sizes) == 5 and min(sizes) > 2000
    for blob in re.findall(r'base64,([A-Za-z0-9+/=]+)"', page):
        assert base64.b64decode(blob)[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_tables_follow_report() -> None:
    report = synthetic_report(n_latents=7)
    page = render_html(report)
    assert page.count('<tr class="check">') == len(report["checks"])
    latents = page.split('<table id="latents">')[1].split("</table>")[0]
    assert latents.count("<tr>") == 1 + 7
    assert latents.count("<mark>" + html_lib.escape(EVIL_SCRIPT) + "</mark>") == 7  # activating token highlighted
    assert 'id="verdict">FAIL<' in page
    assert "kl_mean" in page and "3.2" in page


def test_markdown_summary() -> None:
    report = synthetic_report()
    md = render_markdown(report)
    assert md.startswith("## ❌ Release gate: **FAIL**")
    rows = [line for line in md.splitlines() if line.startswith("| ") and "check" not in line]
    assert len(rows) == len(report["checks"])
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "4/40 misaligned" in md and "10/40 misaligned" in md
    assert md_escape("a|b\n*c*") == "a\\|b \\*c\\*"


def test_junit_counts_and_numbers() -> None:
    report = synthetic_report()
    root = ET.fromstring(render_junit(report))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(report["checks"]) == int(suite.get("tests"))
    assert [c.get("name") for c in cases] == [c["id"] for c in report["checks"]]
    assert int(suite.get("failures")) == len(suite.findall("testcase/failure")) == 1
    assert int(suite.get("errors")) == len(suite.findall("testcase/error")) == 1
    assert int(suite.get("skipped")) == len(suite.findall("testcase/skipped")) == 1
    for case, check in zip(cases, report["checks"], strict=True):
        out = case.find("system-out").text
        data = json.loads(out.removeprefix("WARN: "))
        assert data["value"] == check["value"] and data["threshold"] == check["threshold"]
        assert out.startswith("WARN: ") == (check["status"] == "warn")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["verdict"] == "fail" and props["candidate_model"].startswith("cand <script>")


def test_long_tables_are_collapsed(monkeypatch) -> None:
    import difflib_models.report.html as html_mod

    monkeypatch.setattr(html_mod, "_plots", lambda *args: {})  # tables only: skip drawing

    def details(n_items: int) -> list[str]:
        return re.findall(r'<details class="long"><summary>([^<]*)</summary>', render_html(rich_report(
            n_behavioural=n_items)))

    assert details(15) == ["30 latents (click to show)"]  # 15 rows stay open; the 30 latents collapse
    assert details(16) == ["16 behavioural items (click to show)", "30 latents (click to show)"]
    monkeypatch.undo()
    page = render_html(rich_report(n_behavioural=60))
    items = page.split('<table id="behavioural-items">')[1].split("</table>")[0]
    assert items.count("<tr>") == 1 + 60  # collapsed, not cut
    assert 'id="monitor-decision"><b>FAIL at step 25: decided by evil shift_frac' in page


def test_behavioural_shifts_listed_and_open_are_shown() -> None:
    page = render_html(rich_report())
    table = page.split('<table id="behavioural-shifts">')[1].split("</table>")[0]
    rows = [re.sub(r"<[^>]+>", " ", r).split() for r in table.split("<tr>")[2:]]
    assert [r[:3] for r in rows] == [["evil", "listed", "0.15"], ["evil", "open", "0.45"],
                                     ["sycophancy", "listed", "0.01"], ["sycophancy", "open", "0.03"],
                                     ["hallucination", "listed", "-0.01"], ["hallucination", "open", "-0.03"]]
    assert rows[1][3:] == ["[0.4,", "0.5]", "-", "-"]  # no control: no excess
    md = render_markdown(rich_report())
    assert "- evil answer-text shift, candidate - base (95% CI): listed 0.15 [0.1, 0.2], open 0.45 [0.4, 0.5]" in md


def test_response_signals_and_headroom_are_shown() -> None:
    report = synthetic_report()
    assert '<table id="persona-response">' not in render_html(report)  # no response check, no table
    report["persona"]["traits"][0].update(response_shift=0.4, response_z=0.8, response_null_z=1.234,
                                          response_text_shift=0.1, response_text_z=0.2,
                                          response_base_position=0.867, response_candidate_position=0.898,
                                          response_headroom=0.133, response_position_shift=0.031)
    page = render_html(report)
    table = page.split('<table id="persona-response">')[1].split("</table>")[0]
    assert table.count("<tr>") == 2 and html_lib.escape(report["persona"]["traits"][0]["trait"]) in table
    for value in ("1.234", "0.867", "0.898", "0.133", "0.031"):
        assert value in table
    assert "own answers 1.234 null sd, moved 0.031 on the trait scale, headroom 0.133" in render_markdown(report)
    assert "beyond the control" not in render_markdown(report)  # no control, no excess
    report["persona"]["traits"][0].update(response_control_position=0.5, response_position_excess=0.398)
    table = render_html(report).split('<table id="persona-response">')[1].split("</table>")[0]
    cells = re.sub(r"<[^>]+>", " ", table.split("<tr>")[2]).split()
    assert cells[-2:] == ["0.398", "0.133"]  # the "beyond control" column, then headroom
    assert "moved 0.031 on the trait scale (0.398 beyond the control), headroom 0.133" in render_markdown(report)
