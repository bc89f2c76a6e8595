"""Reports: report.json (the single source of truth, schema-versioned) and its HTML, Markdown and JUnit renderings.

Public API: :func:`new_report`, :func:`write_report`, :func:`load_report`, :func:`validate_report`,
:func:`render_html`, :func:`render_markdown`, :func:`render_junit`; the gate's typed records
:class:`GateVerdict`, :class:`CheckResult`, :class:`PersonaSection`, :class:`PersonaRow`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from difflib_models._lazy import lazy_exports
from difflib_models.report.builder import load_report, new_report, rerender, write_report
from difflib_models.report.records import CheckResult, GateVerdict, PersonaRow, PersonaSection
from difflib_models.report.schema import SCHEMA_VERSION, validate_report

if TYPE_CHECKING:
    from difflib_models.report.html import render_html as render_html
    from difflib_models.report.junit import render_junit as render_junit
    from difflib_models.report.markdown import render_markdown as render_markdown

# the renderers import matplotlib/jinja2: loaded on first use
_LAZY: dict[str, str] = {"render_html": "html", "render_markdown": "markdown", "render_junit": "junit"}

__all__ = ["SCHEMA_VERSION", "CheckResult", "GateVerdict", "PersonaRow", "PersonaSection", "load_report", "new_report",
           "render_html", "render_junit", "render_markdown", "rerender", "validate_report", "write_report"]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
