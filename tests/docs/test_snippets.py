"""Every Python and shell snippet in README.md and docs/*.md runs (issue 16 item 9).

Collection: fenced blocks tagged ``python``/``py`` (run with this interpreter in a fresh subprocess) and
``bash``/``sh``/``shell``/``console`` (run with ``bash -euo pipefail``; in ``console`` blocks only the ``$ `` lines),
plus untagged blocks in which every command line starts with ``difflib-models``. ``difflib-models`` is a shell
function for ``python -m difflib_models`` with ``PYTHONPATH`` = this checkout, offline, no progress bars.

One test per document: its snippets run in order in one fresh temporary working directory (a later snippet may
read the files an earlier one wrote, as a reader following the page would), each in its own process.

What is not run as written, all visible here:
- ``SKIP``: snippets that cannot run by nature, with the reason. No test case is generated for them (no
  pytest.skip), and ``test_every_doc_snippet_is_run_or_listed`` fails when an entry no longer matches a snippet.
- ``SUBSTITUTIONS`` (tests/docs/substitutions.yaml): per snippet (document + a stable substring of it), text
  replacements that swap SmolLM2-135M-Instruct for the tiny shared model and shrink step counts. Every ``old``
  text must still occur in its snippet (else the test fails and names it), and a substituted snippet that would
  still load SmolLM2 fails, so a doc edit cannot silently make this test slow.
- optional groups of a usage synopsis (``[--policy release.yaml]``) are left out of shell snippets.
- ``GIVEN``: input files the docs describe as the user's own (their adapter, their JSONL, vector files from
  ``persona extract``), made once per session for the tiny model and copied into every working directory.

``EXPECTED_OUTPUTS``: the files each document's snippets say they write must exist afterwards. A failure names the
snippet's file and line and shows the code as run and its output. ``-rP`` (or ``-s``) prints seconds per snippet.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import source_loads

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = ("README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")))
PY_LANGS = {"python", "py"}
SH_LANGS = {"bash", "sh", "shell", "console"}
TIMEOUT_S = 300  # per snippet

# (document, stable substring of the snippet, reason it is not run)
SKIP: tuple[tuple[str, str, str], ...] = (
    ("README.md", "pip install", "installs packages (network); the test runs in the installed environment"),
    ("README.md", "bash scripts/demo.sh", "the full demo (SmolLM2 fine-tunes, minutes); tests/demo covers it"),
    ("README.md", "bash scripts/test.sh", "runs the whole test suite, this test included"),
    ("docs/quickstart.md", "bash scripts/demo.sh", "the full demo and the whole test suite (see README.md)"),
    ("docs/quickstart.md", "mlflow ui", "starts a long-running web server"),
    ("docs/gate-policy.md", "runs/control-s0/adapter", "the calibration procedure on the user's own control and "
     "organism adapters (SmolLM2 fine-tunes); benchmarks/bench_validity.py runs it, tests/benchmarks tests its math"),
    ("docs/interop.md", "from dictionary_learning", "needs the peer library dictionary_learning (not a "
     "dependency); benchmarks/check_interop.py runs it in the peer virtualenv"),
    ("docs/interop.md", "from repeng", "needs the peer library repeng (not a dependency); "
     "benchmarks/check_interop.py runs it in the peer virtualenv"),
    ("docs/interop.md", "from steering_vectors", "needs the peer library steering-vectors (not a dependency); "
     "benchmarks/check_interop.py runs it in the peer virtualenv"),
)

# Text replacements per snippet, in substitutions.yaml (a data file, so that its model names and shared-folder
# paths are not read as loads of this module by the auto-marking in tests/conftest.py).
SUBSTITUTIONS_FILE = Path(__file__).with_name("substitutions.yaml")


def load_substitutions() -> dict[tuple[str, str], list[tuple[str, str]]]:
    import yaml

    entries = yaml.safe_load(SUBSTITUTIONS_FILE.read_text(encoding="utf-8"))
    return {(e["doc"], e["key"]): [(old, new) for old, new in e["replace"]] for e in entries}


SUBSTITUTIONS = load_substitutions()

TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)

# Inputs the docs call the user's own, present in every working directory (made by the `given` fixture).
GIVEN = (
    "sycophancy.safetensors",  # + .json: PersonaExtractor(mode="prompt_contrast") on {tiny}, as `persona extract`
    "evil.safetensors",  # + .json, same
    "train.jsonl",  # the first 12 rows of the built-in sycophancy-inducing set
    "my_texts.jsonl",  # 8 {"text": ...} rows
    "runs/my_adapter",  # = {adapter}: a fresh LoRA (add_lora) of {tiny}, saved with save_pretrained
    "runs/cc",  # an l1 crosscoder over 2 sources of width d_model({tiny}), saved with Crosscoder.save
)


# Files a document's snippets say they write (relative to its working directory): present after the run, so a
# snippet that exits 0 without doing its job still fails. None of them is among the GIVEN inputs.
EXPECTED_OUTPUTS: dict[str, tuple[str, ...]] = {
    "README.md": ("runs/readme/difflib_models/snapshots/index.json",
                  "runs/readme/difflib_models/persona_monitor/persona_monitor.json"),
    "docs/callbacks.md": ("difflib_models/snapshots/index.json", "difflib_models/persona_monitor/persona_monitor.json",
                          "runs/lora/mlflow.db"),
    "docs/data-filtering.md": ("filtered/scores.jsonl", "filtered/summary.json", "filtered/kept.jsonl",
                               "filtered/flagged.jsonl"),
    "docs/diffing.md": ("runs/diff/diff.json", "runs/diff-full/diff.json", "runs/fish/narrow_adapter/adapter_config.json",
                        "runs/fish/diff_narrow/diff.json", "runs/fish/diff_control/diff.json"),
    "docs/gate-policy.md": ("gate-out/report.json", "gate-out/report.html", "gate-out/report.md", "gate-out/junit.xml"),
    "docs/interop.md": ("runs/cc_dl/ae.pt", "runs/cc_dl/config.json", "runs/cc_sae/ae.pt", "evil.gguf",
                        "evil_sv.safetensors", "evil_sv.json", "evil_plain.safetensors"),
}


@dataclass(frozen=True)
class Snippet:
    doc: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def parse(doc: str) -> list[Snippet]:
    """Fenced code blocks of a Markdown file (any language), with the line of the opening fence."""
    lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
    out: list[Snippet] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        out.append(Snippet(doc, start + 1, lang, "\n".join(body) + "\n"))
        i += 1
    return out


def kind(snippet: Snippet) -> str | None:
    """``python``, ``shell`` or None (not executable: output, YAML, JSON...)."""
    if snippet.lang in PY_LANGS:
        return "python"
    if snippet.lang in SH_LANGS:
        return "shell"
    lines = snippet.code.splitlines()
    commands = [ln for i, ln in enumerate(lines) if ln.strip() and not (i and lines[i - 1].rstrip().endswith("\\"))]
    if not snippet.lang and commands and all(ln.startswith("difflib-models ") for ln in commands):
        return "shell"  # an untagged block of commands (an untagged block of output is left alone)
    return None


def skip_reason(snippet: Snippet) -> str | None:
    return next((r for doc, key, r in SKIP if doc == snippet.doc and key in snippet.code), None)


def runnable(doc: str) -> list[Snippet]:
    return [s for s in parse(doc) if kind(s) and not skip_reason(s)]


def substituted(snippet: Snippet, values: dict[str, str]) -> str:
    code = snippet.code
    for (doc, key), pairs in SUBSTITUTIONS.items():
        if doc != snippet.doc or key not in snippet.code:
            continue
        for old, new in pairs:
            assert old in code, (f"{snippet.where}: the substitution table expects {old!r} in this snippet "
                                 f"(entry {doc!r}, {key!r}); update SUBSTITUTIONS in {__file__}")
            code = code.replace(old, new.format(**values))
    if kind(snippet) == "shell":
        code = SYNOPSIS_OPTIONAL.sub("", code)
    if snippet.lang == "console":
        code = "".join(ln[2:] + "\n" for ln in code.splitlines() if ln.startswith("$ "))
    return code


# A usage synopsis in a shell snippet marks optional options as `[--opt VALUE ...]`: run without them.
SYNOPSIS_OPTIONAL = re.compile(r"[ \t]*\[--[^\]\n]*\]")

SHELL_PRELUDE = 'difflib-models() { "$DOCS_PYTHON" -m difflib_models "$@"; }\n'


def run_snippet(snippet: Snippet, code: str, cwd: Path, env: dict[str, str]) -> None:
    if kind(snippet) == "python":
        argv = [sys.executable, "-c", code]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", SHELL_PRELUDE + code]
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{snippet.where}: timed out after {TIMEOUT_S} s\n--- code ---\n{code}\n--- output ---\n"
                    f"{exc.stdout or ''}{exc.stderr or ''}")
    print(f"{snippet.where}: {time.monotonic() - started:.1f} s")  # shown with -rA / -s
    if proc.returncode != 0:
        pytest.fail(f"{snippet.where}: exit code {proc.returncode}\n--- code (after substitutions) ---\n{code}"
                    f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-6000:]}",
                    pytrace=False)


@pytest.fixture(scope="session")
def tiny(tinystories_656k: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """{tiny}: a copy of tinystories-656k whose tokenizer has TINY_CHAT_TEMPLATE."""
    import json

    model = tmp_path_factory.mktemp("docs_model") / "tinystories-656k-chat"
    shutil.copytree(tinystories_656k, model)
    cfg_path = model / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["chat_template"] = TINY_CHAT_TEMPLATE
    cfg_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return model


@pytest.fixture(scope="session")
def given(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GIVEN inputs, made once for the tiny model (see GIVEN)."""
    import json

    import torch

    from difflib_models.crosscoder.config import CrosscoderConfig
    from difflib_models.crosscoder.model import Crosscoder
    from difflib_models.datasets import load_dataset
    from difflib_models.models.loading import load_model
    from difflib_models.persona import PersonaExtractor
    from difflib_models.training.lora_module import add_lora

    root = tmp_path_factory.mktemp("docs_given")
    loaded = load_model(str(tiny))
    for trait in ("sycophancy", "evil"):
        ex = PersonaExtractor(mode="prompt_contrast", layers="all").fit(loaded, trait)
        ex.to_vector_set(selected_layer=loaded.n_layers // 2, selection_reason="docs test").save(root / trait)
    rows = load_dataset("sycophancy-inducing")[:12]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    texts = [r["messages"][0]["content"] for r in load_dataset("clean-reference")[:8]]
    (root / "my_texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    add_lora(load_model(str(tiny)).model).save_pretrained(str(root / "runs" / "my_adapter"))
    torch.manual_seed(0)
    Crosscoder(CrosscoderConfig(d_model=loaded.d_model, dict_size=64, activation="l1", steps=10,
                                batch_size=16)).save(root / "runs" / "cc")
    missing = [g for g in GIVEN if not (root / g).exists()]
    assert not missing, f"GIVEN inputs not made: {missing}"
    return root


def _docs_with_runnable() -> list[str]:
    return [d for d in DOC_FILES if runnable(d)]


@pytest.mark.slow  # ~3 min for all docs on 2 loaded cores (per-snippet seconds are printed; see -rP)
@pytest.mark.parametrize("doc", _docs_with_runnable())
def test_doc_snippets_run(doc: str, given: Path, tiny: Path, shared_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(given, work)
    values = {"tiny": str(tiny), "shared": str(shared_dir), "adapter": str(work / "runs" / "my_adapter")}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DOCS_PYTHON": sys.executable, "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "DIFFLIB_MODELS_NO_PROGRESS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "DIFFLIB_MODELS_CACHE": str(tmp_path / "cache")}  # no reuse of (or writes to) the user's cache
    for snippet in runnable(doc):
        code = substituted(snippet, values)
        assert source_loads(code) <= {"shared"}, (
            f"{snippet.where} would load SmolLM2-135M-Instruct (slow, and this test is not marked smollm2): add a "
            f"replacement to {SUBSTITUTIONS_FILE.name}\n{code}")
        run_snippet(snippet, code, work, env)
    missing = [f for f in EXPECTED_OUTPUTS.get(doc, ()) if not (work / f).is_file()]
    assert not missing, f"{doc}: its snippets ran but did not write {missing} (EXPECTED_OUTPUTS)"


def test_every_doc_snippet_is_run_or_listed() -> None:
    """Each executable-looking block is either run (above) or in SKIP; each SKIP entry still matches a block,
    and each SUBSTITUTIONS key matches a runnable block."""
    snippets = [s for d in DOC_FILES for s in parse(d)]
    stale = [(doc, key) for doc, key, _ in SKIP if not any(s.doc == doc and key in s.code for s in snippets)]
    assert not stale, f"SKIP entries that match no snippet any more (remove or update them): {stale}"
    run = [s for d in DOC_FILES for s in runnable(d)]
    unused = [k for k in SUBSTITUTIONS if not any(s.doc == k[0] and k[1] in s.code for s in run)]
    assert not unused, f"SUBSTITUTIONS entries that match no runnable snippet: {unused}"
    assert any(s.doc == "README.md" and kind(s) == "python" for s in run), "README.md must have a Python example"
    assert set(EXPECTED_OUTPUTS) <= set(_docs_with_runnable()), "EXPECTED_OUTPUTS names a document with nothing run"
    given = [Path(g) for g in GIVEN]
    assert not [f for files in EXPECTED_OUTPUTS.values() for f in files
                if any(Path(f) == g or g in Path(f).parents for g in given)], "an expected output is a GIVEN input"


def test_parser_finds_fences_languages_and_lines() -> None:
    """The parser on a known document: the README's bash and python blocks with their fence lines."""
    blocks = parse("README.md")
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert blocks and all(lines[b.line - 1].lstrip().startswith("```") for b in blocks)
    assert {b.lang for b in blocks} >= {"bash", "python"}
    sample = Snippet("x.md", 1, "console", "$ echo hi\nhi\n")
    assert substituted(sample, {}) == "echo hi\n" and kind(sample) == "shell"
    assert kind(Snippet("x.md", 1, "", "difflib-models gate --help\n")) == "shell"
    assert kind(Snippet("x.md", 1, "", "difflib-models a \\\n    --b\ndifflib-models c\n")) == "shell"
    assert kind(Snippet("x.md", 1, "", "difflib-models demo (quick): 3 s\n  verdict PASS\n")) is None
    assert kind(Snippet("x.md", 1, "yaml", "a: 1\n")) is None
    synopsis = Snippet("x.md", 1, "bash", "difflib-models gate --out o \\\n    [--policy p.yaml] [--json] \\\n"
                                          "    [--md \"$X\"]\n")
    assert substituted(synopsis, {}) == "difflib-models gate --out o \\\n \\\n\n"
