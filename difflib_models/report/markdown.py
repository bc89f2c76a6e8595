"""report.md: a short Markdown summary for pull-request comments, CI step summaries and MLflow's run note.

Rendered from ``templates/report.md.j2`` (Jinja2, autoescape off: Markdown is not HTML) with two filters:
``md`` (:func:`md_escape`) for every text value and ``num`` for numbers.

Model and data text is kept out of the summary except model names, which are escaped for Markdown/HTML
(GitHub renders inline HTML in comments).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from difflib_models.io import atomic_write_text
from difflib_models.report.behaviour_records import BehaviouralSection
from difflib_models.report.records import GateVerdict, PersonaSection

_ICONS = {"pass": "✅", "warn": "⚠️", "fail": "❌", "error": "⛔", "skipped": "⏭️", "inconclusive": "❔", "none": "•"}
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|>~])")
# every character some reader treats as a line break (str.splitlines' set), then the other control characters,
# lone surrogates and U+FFFE/U+FFFF: a cell stays on its table line and the file stays valid UTF-8 text
_LINE_BREAKS = re.compile("[\n\r\t\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_FORBIDDEN = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def md_escape(text: Any) -> str:
    """Escape ``text`` for a Markdown table cell (HTML entities plus Markdown punctuation, no line breaks, control
    characters and lone surrogates as U+FFFD)."""
    out = _FORBIDDEN.sub("\ufffd", _LINE_BREAKS.sub(" ", str(text)))
    out = html.escape(out, quote=True)
    return _MD_SPECIAL.sub(r"\\\1", out)


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return md_escape(value)


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=False,  # Markdown, not HTML: the template escapes every text value with the `md` filter
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_escape
    env.filters["num"] = _num
    return env


def render_markdown(report: Mapping[str, Any], *, max_checks: int = 50) -> str:
    """A short Markdown summary (templates/report.md.j2): verdict, models, checks table, persona and behavioural
    headlines. The checks, persona rows and behavioural rates are read into their typed records
    (:mod:`difflib_models.report.records`, :mod:`difflib_models.report.behaviour_records`)."""
    gate = GateVerdict.from_report(report)
    counts = ", ".join(f"{n} {s}" for s, n in gate.counts().items() if n)
    text = _environment().get_template("report.md.j2").render(
        report=report, verdict=str(report.get("verdict", "none")), icons=_ICONS, models=report.get("models") or {},
        checks=gate.checks, counts=counts, max_checks=max_checks, persona=PersonaSection.from_report(report),
        behavioural=BehaviouralSection.from_report(report))
    return text.rstrip() + "\n"


def write_markdown(report: Mapping[str, Any], path: str | Path) -> Path:
    return atomic_write_text(path, render_markdown(report))
