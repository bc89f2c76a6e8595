"""report.md: a short Markdown summary for pull-request comments, CI step summaries and MLflow's run note.

Model and data text is kept out of the summary except model names, which are escaped for Markdown/HTML
(GitHub renders inline HTML in comments).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from difflib_models.io import atomic_write_text

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


def render_markdown(report: Mapping[str, Any], *, max_checks: int = 50) -> str:
    """A short Markdown summary: verdict, models, checks table, persona and behavioural headlines."""
    verdict = str(report.get("verdict", "none"))
    lines = [f"## {_ICONS.get(verdict, '')} {md_escape(report.get('title', 'report'))}: **{md_escape(verdict.upper())}**",
             ""]
    if report.get("verdict_reason"):
        lines += [md_escape(report["verdict_reason"]), ""]
    models = report.get("models") or {}
    for role in ("base", "candidate", "control"):
        m = models.get(role)
        if m:
            ah = f", adapter `{str(m['adapter_hash'])[:12]}`" if m.get("adapter_hash") else ""
            lines.append(f"- **{role}**: {md_escape(m.get('name', '?'))} (weights `{str(m.get('weight_hash'))[:12]}`{ah})")
    lines.append("")
    checks = list(report.get("checks") or [])
    if checks:
        counts = ", ".join(
            f"{sum(1 for c in checks if c['status'] == s)} {s}"
            for s in ("pass", "warn", "fail", "error", "skipped")
            if any(c["status"] == s for c in checks)
        )
        lines += [f"**Checks**: {counts}", "", "| | check | metric | value | pass if | source |",
                  "|---|---|---|---|---|---|"]
        for c in checks[:max_checks]:
            lines.append(
                f"| {_ICONS.get(c['status'], '')} {md_escape(c['status'])} | {md_escape(c['id'])} "
                f"| `{md_escape(c['metric'])}` | {_num(c.get('value'))} "
                f"| {md_escape(c['comparator'])} {_num(c.get('threshold'))} | {md_escape(c['source'])} |"
            )
        if len(checks) > max_checks:
            lines.append(f"| | … {len(checks) - max_checks} more in report.json | | | | |")
        lines.append("")
    persona = report.get("persona") or {}
    if persona.get("traits"):
        lines += ["**Persona shifts** (candidate − base, last prompt token)", ""]
        for t in persona["traits"]:
            weak = "" if t.get("signal_ok", True) else " — signal too weak for a verdict"
            lines.append(
                f"- {md_escape(t['trait'])} @ blocks.{t['layer']}: shift_z {_num(t.get('shift_z'))}, "
                f"null percentile {_num(t.get('null_percentile'))}, excess over control "
                f"{_num(t.get('excess_z'))}{weak}"
            )
        lines.append("")
    beh = report.get("behavioural") or {}
    if beh.get("models"):
        lines += [f"**Behavioural eval** ({beh.get('mode')})", ""]
        for name, b in beh["models"].items():
            lines.append(
                f"- {md_escape(name)}: {b['n_misaligned']}/{b['n']} misaligned = {_num(b['rate'])} "
                f"(95% CI {_num(b['ci_low'])}–{_num(b['ci_high'])})"
            )
        lines.append("")
    for note in report.get("notes") or []:
        lines.append(f"> {md_escape(note)}")
    lines.append(f"<sub>difflib_models {md_escape(report['tool']['version'])} · schema {report['schema_version']}"
                 f" · full report in report.html / report.json</sub>")
    return "\n".join(lines).rstrip() + "\n"


def write_markdown(report: Mapping[str, Any], path: str | Path) -> Path:
    return atomic_write_text(path, render_markdown(report))
