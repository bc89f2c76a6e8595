"""junit.xml: one testcase per gate check, as CI systems ingest it.

``fail`` -> ``<failure>``, ``error`` -> ``<error>``, ``skipped`` -> ``<skipped>``; ``warn`` is a passing
testcase whose system-out says WARN. The numbers of every check go to ``<system-out>``. Characters that XML 1.0
forbids (control characters in a model name or token) become U+FFFD, so the file always parses.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from difflib_models.io import atomic_write_text
from difflib_models.report.records import CheckResult, GateVerdict

# characters XML 1.0 forbids (C0 controls but \t \n \r, lone surrogates, U+FFFE, U+FFFF): a model name or token
# holding one would make junit.xml unparseable, so each becomes U+FFFD and everything else is kept
_XML_FORBIDDEN = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: Any) -> str:
    """``str(text)`` with every character that XML 1.0 forbids replaced by U+FFFD (the rest unchanged)."""
    return _XML_FORBIDDEN.sub("\ufffd", str(text))


def _sanitize(root: ET.Element) -> None:
    for el in root.iter():
        if el.text is not None:
            el.text = xml_safe(el.text)
        if el.tail is not None:
            el.tail = xml_safe(el.tail)
        for key, value in el.attrib.items():
            el.attrib[key] = xml_safe(value)


def _describe(check: CheckResult) -> str:
    return (f"{check.metric} = {check.value!r}; pass if {check.comparator} {check.threshold!r} "
            f"(severity {check.severity}, source {check.source})")


def render_junit(report: Mapping[str, Any], *, suite_name: str = "difflib_models.gate") -> str:
    """The JUnit XML document for ``report``'s checks (read into :class:`~difflib_models.report.records.CheckResult`
    records)."""
    gate = GateVerdict.from_report(report)
    checks = gate.checks
    counts = gate.counts()
    suites = ET.Element("testsuites", name=suite_name, tests=str(len(checks)), failures=str(counts["fail"]),
                        errors=str(counts["error"]), skipped=str(counts["skipped"]))
    suite = ET.SubElement(
        suites, "testsuite", name=suite_name, tests=str(len(checks)), failures=str(counts["fail"]),
        errors=str(counts["error"]), skipped=str(counts["skipped"]), timestamp=str(report.get("created_at", "")),
    )
    props = ET.SubElement(suite, "properties")
    models = report.get("models") or {}
    for role in ("base", "candidate", "control"):
        if models.get(role):
            ET.SubElement(props, "property", name=f"{role}_model", value=str(models[role].get("name")))
            ET.SubElement(props, "property", name=f"{role}_weight_hash", value=str(models[role].get("weight_hash")))
    ET.SubElement(props, "property", name="verdict", value=str(report.get("verdict")))
    ET.SubElement(props, "property", name="schema_version", value=str(report.get("schema_version")))
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname=suite_name, name=check.id, time="0")
        message = str(check.message or _describe(check))
        status = check.status
        if status == "fail":
            ET.SubElement(case, "failure", message=message, type="GateCheckFailed").text = _describe(check)
        elif status == "error":
            ET.SubElement(case, "error", message=message, type="GateCheckError").text = _describe(check)
        elif status == "skipped":
            ET.SubElement(case, "skipped", message=message)
        row = check.to_dict()
        out = {k: row[k] for k in ("metric", "value", "threshold", "comparator", "severity", "status", "source")}
        out["details"] = row["details"]
        prefix = "WARN: " if status == "warn" else ""
        ET.SubElement(case, "system-out").text = prefix + json.dumps(out, sort_keys=True, default=str)
    _sanitize(suites)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write_junit(report: Mapping[str, Any], path: str | Path) -> Path:
    return atomic_write_text(path, render_junit(report))
