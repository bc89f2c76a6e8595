"""Reports: report.json (the single source of truth, schema-versioned) and its HTML, Markdown and JUnit renderings.

Public API: :func:`new_report`, :func:`write_report`, :func:`load_report`, :func:`validate_report`,
:func:`render_html`, :func:`render_markdown`, :func:`render_junit`.
"""

from __future__ import annotations

from difflib_models.report.builder import load_report, new_report, rerender, write_report
from difflib_models.report.schema import SCHEMA_VERSION, validate_report

__all__ = ["SCHEMA_VERSION", "load_report", "new_report", "rerender", "validate_report", "write_report"]


def __getattr__(name: str):  # renderers import matplotlib/jinja2: load them on first use
    if name == "render_html":
        from difflib_models.report.html import render_html

        return render_html
    if name == "render_markdown":
        from difflib_models.report.markdown import render_markdown

        return render_markdown
    if name == "render_junit":
        from difflib_models.report.junit import render_junit

        return render_junit
    raise AttributeError(f"module 'difflib_models.report' has no attribute {name!r}")
