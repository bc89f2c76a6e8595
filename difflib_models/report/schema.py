"""The report.json schema: version constant, the published JSON Schema and validation.

The schema file ships inside the package (``difflib_models/report/report.schema.json``) so that CI systems
and other tools can validate reports without importing the library::

    python -c "import jsonschema, json; jsonschema.validate(json.load(open('report.json')),
               json.load(open('report.schema.json')))"

Versioning: ``schema_version`` is ``"1.<minor>"``. Minor versions only add optional fields; a reader of
1.x accepts any 1.y. A breaking change would bump the major version and the pattern in the schema.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from difflib_models.errors import ConfigError

SCHEMA_VERSION = "1.0"
SCHEMA_FILE = "report.schema.json"

#: statuses a check may take, in increasing order of badness (skipped sits apart: not evaluated)
CHECK_STATUSES = ("pass", "warn", "fail", "error", "skipped")
#: overall verdicts
VERDICTS = ("pass", "warn", "fail", "error", "inconclusive", "none")
COMPARATORS = ("<", "<=", ">", ">=", "==", "!=")
SOURCES = ("published", "calibrated", "policy")


class ReportSchemaError(ConfigError):
    """A report does not validate against the published JSON Schema."""


def schema_path() -> Path:
    """Filesystem path of the published JSON Schema."""
    return Path(str(resources.files("difflib_models.report").joinpath(SCHEMA_FILE)))


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of report.json, parsed."""
    return json.loads(schema_path().read_text(encoding="utf-8"))


def validation_errors(report: Any) -> list[str]:
    """All schema violations of ``report`` as readable strings (empty list when valid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(report), key=lambda e: list(e.absolute_path))
    out = []
    for err in errors:
        where = "/".join(str(p) for p in err.absolute_path) or "<root>"
        out.append(f"{where}: {err.message}")
    return out


def validate_report(report: Any) -> None:
    """Raise :class:`ReportSchemaError` listing every violation when ``report`` does not match the schema."""
    errors = validation_errors(report)
    if errors:
        shown = "; ".join(errors[:10]) + (f"; ... ({len(errors) - 10} more)" if len(errors) > 10 else "")
        raise ReportSchemaError(
            f"report does not match {SCHEMA_FILE} (schema_version {SCHEMA_VERSION}): {shown}. "
            "HINT: reports are written by difflib_models.report.builder; edit them only through it."
        )
