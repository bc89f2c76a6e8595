from __future__ import annotations

import json

import jsonschema
import pytest

from difflib_models.crosscoder.analysis import analyze_crosscoder
from difflib_models.crosscoder.latent_scaling import latent_scaling
from difflib_models.crosscoder.report import report_section
from difflib_models.crosscoder.sources import TensorSource
from difflib_models.errors import ConfigError


def test_section_matches_report_schema_and_flags_artifacts(l1_cc, synthetic):
    from difflib_models.report.schema import load_schema

    src = TensorSource(synthetic.acts[:8000])
    analysis = analyze_crosscoder(l1_cc, src)
    scaling = latent_scaling(l1_cc, src)
    first = next(iter(scaling["latents"]))
    examples = {str(first): [{"tokens": ["a", "b"], "index": 1, "activation": 2.0, "seq": 0, "pos": 1}]}
    section = report_section(analysis, scaling, examples, top_n=100)
    schema = load_schema()
    jsonschema.validate(json.loads(json.dumps(section)), {"$defs": schema["$defs"], **schema["$defs"]["crosscoder"]})
    assert section["latent_classes"] == analysis["class_counts"]
    rows = {r["latent"]: r for r in section["top_latents"]}
    n_ft = analysis["class_counts"]["ft_only"]
    assert [r["class"] for r in section["top_latents"][:n_ft]] == ["ft_only"] * n_ft  # ft-only first
    flagged = {j for j, e in scaling["latents"].items() if e["artifact"]}
    assert flagged and {j for j, r in rows.items() if "artifact" in r["flags"]} == flagged
    assert rows[first]["contexts"][0] == {"tokens": ["a", "b"], "index": 1, "activation": 2.0}
    with pytest.raises(ConfigError, match="analysis"):
        report_section({"foo": 1})
