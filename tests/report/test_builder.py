"""Display names of models: short names in renderings, the full identity kept in report.json."""

from __future__ import annotations

import html as html_lib
import re

import pytest

from difflib_models.report.builder import identity_dict, new_report
from difflib_models.report.html import render_html
from difflib_models.report.names import display_name
from difflib_models.report.schema import validate_report
from tests.report.synthetic import EVIL_SCRIPT, GGUF_CACHE_PATH, rich_report, synthetic_report


@pytest.mark.parametrize(("name", "path", "source", "expected"), [
    (GGUF_CACHE_PATH, GGUF_CACHE_PATH, "gguf", "SmolLM2-135M-Instruct (Q4_1)"),
    ("/work/shared/models/tinystories-656k", "/work/shared/models/tinystories-656k", "hf_dir", "tinystories-656k"),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", None, "hub", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    ("./models/tiny/", "./models/tiny", "hf_dir", "tiny"),
    ("/m/Qwen2.5-0.5B-Instruct-f16.gguf", "/m/Qwen2.5-0.5B-Instruct-f16.gguf", "gguf", "Qwen2.5-0.5B-Instruct (f16)"),
    ("LlamaForCausalLM", None, "in_memory", "LlamaForCausalLM"),
])
def test_display_name(name: str, path: str | None, source: str, expected: str) -> None:
    assert display_name({"name": name, "path": path, "source": source, "weight_hash": "0" * 64}) == expected


def test_adapter_display_name_and_explicit_override() -> None:
    base = {"name": GGUF_CACHE_PATH, "path": GGUF_CACHE_PATH, "source": "gguf", "weight_hash": "0" * 64}
    adapter = {"name": f"{GGUF_CACHE_PATH}+evil-lora", "path": "/tmp/runs/evil-lora/", "source": "peft",
               "weight_hash": "0" * 64, "adapter_hash": "1" * 64, "base": base}
    out = identity_dict(adapter)
    assert out["display_name"] == "SmolLM2-135M-Instruct (Q4_1) + evil-lora"
    assert out["base"]["display_name"] == "SmolLM2-135M-Instruct (Q4_1)"
    assert out["name"] == adapter["name"] and out["path"] == adapter["path"]  # the full identity is kept
    assert identity_dict({**base, "display_name": "my base"})["display_name"] == "my base"
    assert display_name(None) == "—"


def test_report_json_carries_display_names_and_old_reports_still_render() -> None:
    report = rich_report()
    validate_report(report)
    assert report["models"]["base"]["display_name"] == "SmolLM2-135M-Instruct (Q4_1)"
    old = synthetic_report()  # identities given as dicts with a name only: names computed at render time too
    for m in old["models"].values():
        if m:
            m.pop("display_name", None)
    validate_report(old)
    page = render_html(old)
    names = re.findall(r'<b class="model-name">(.*?)</b>', page)
    assert names == ["base-model", html_lib.escape(f"cand {EVIL_SCRIPT}")]
    assert "<script>" not in page


def test_models_table_shows_short_name_and_full_path_in_details() -> None:
    report = rich_report()
    page = render_html(report)
    rows = page.split('<table id="models">')[1].split("</table>\n<h2")[0]
    assert re.findall(r'<b class="model-name">(.*?)</b>', rows) == [
        "SmolLM2-135M-Instruct (Q4_1)", "SmolLM2-135M-Instruct (Q4_1) + evil-lora"]
    assert rows.count('<details class="model-details">') == 2
    assert f"<th>path</th><td><code>{GGUF_CACHE_PATH}</code>" in rows
    assert new_report("diff")["models"]["base"] is None
