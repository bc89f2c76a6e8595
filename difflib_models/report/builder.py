"""Build, write, load and re-render report.json.

A report is a plain ``dict`` that validates against ``report.schema.json``; this module creates one with the
provenance every report must carry (tool and library versions, model identities with weight/adapter hashes,
hook-point map, layer convention, seeds, data hashes), lets producers attach sections, and writes it together
with its renderings::

    report = new_report("gate", base=loaded_base.identity, candidate=loaded_cand.identity,
                        hook_points=loaded_base.hook_points)
    report["persona"] = {...}
    paths = write_report(report, "out/")        # report.json, report.html, report.md, junit.xml

``rerender("out/")`` rebuilds the HTML/Markdown/JUnit from an existing report.json without recomputing.
"""

from __future__ import annotations

import datetime as _dt
import logging
import platform
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from difflib_models._version import __version__
from difflib_models.errors import ConfigError, bad_value
from difflib_models.files import load_json
from difflib_models.finite import finite_or_none
from difflib_models.io import atomic_write_json, atomic_write_text, sha256_file
from difflib_models.models.convention import LAYER_CONVENTION
from difflib_models.persona.filtering.records import FilterSummary
from difflib_models.report.alignment_records import CrosscoderAlignment
from difflib_models.report.behaviour_records import BehaviouralSection
from difflib_models.report.html import render_html
from difflib_models.report.junit import render_junit
from difflib_models.report.markdown import render_markdown
from difflib_models.report.names import display_name
from difflib_models.report.records import GateVerdict, PersonaSection
from difflib_models.report.schema import SCHEMA_VERSION, validate_report

log = logging.getLogger(__name__)

LIBRARIES = ("torch", "transformers", "peft", "lightning", "pytorch-lightning", "mlflow", "safetensors", "numpy")
SECTIONS = ("drift", "crosscoder", "adl", "weights", "persona", "monitor", "data_filter", "behavioural")
RENDERINGS = ("html", "md", "junit")
FILENAMES = {"json": "report.json", "html": "report.html", "md": "report.md", "junit": "junit.xml"}


def library_versions(names: Iterable[str] = LIBRARIES) -> dict[str, str | None]:
    """Installed versions of the libraries a result depends on (``None`` when absent); no imports."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def identity_dict(identity: Any) -> dict[str, Any] | None:
    """A model identity (``ModelIdentity``, ``LoadedModel`` or dict) as a JSON-ready dict, with a short
    ``display_name`` added (see :func:`display_name`)."""
    if identity is None:
        return None
    if hasattr(identity, "identity") and not isinstance(identity, Mapping):  # a LoadedModel
        identity = identity.identity
    if hasattr(identity, "to_dict"):
        identity = identity.to_dict()
    if not isinstance(identity, Mapping):
        raise ConfigError(bad_value("identity", identity, "ModelIdentity, LoadedModel or dict"))
    out = dict(identity)
    if out.get("base") is not None:
        out["base"] = identity_dict(out["base"])
    out.setdefault("display_name", display_name(out))
    return out


def hook_points_dict(hook_points: Any) -> dict[str, Any] | None:
    """The hook-point map (``HookPointMap`` or dict) with canonical name -> module path."""
    if hook_points is None:
        return None
    if isinstance(hook_points, Mapping):
        out = dict(hook_points)
    else:
        out = dict(hook_points.to_dict()) if hasattr(hook_points, "to_dict") else {}
        out.setdefault("block_path", getattr(hook_points, "block_path", ""))
        out.setdefault("n_layers", int(getattr(hook_points, "n_layers", 0)))
    if "names" not in out and "block_path" in out and "n_layers" in out:
        out["names"] = {f"blocks.{i}": f"{out['block_path']}.{i}" for i in range(int(out["n_layers"]))}
    return out


def data_entry(name: str, path: str | Path, n_items: int | None = None) -> dict[str, Any]:
    """A ``data`` entry: name, path and sha256 of a data file used to produce the report."""
    path = Path(path)
    digest = sha256_file(path) if path.is_file() else "unavailable"
    return {"name": name, "path": str(path), "sha256": digest, "n_items": n_items}


def new_report(
    kind: str = "report",
    *,
    base: Any = None,
    candidate: Any = None,
    control: Any = None,
    hook_points: Any = None,
    seeds: Mapping[str, int | None] | None = None,
    data: Iterable[Mapping[str, Any]] = (),
    title: str | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """A new, valid report with provenance filled in and every section empty (``None``)."""
    if kind not in ("gate", "diff", "monitor", "report"):
        raise ConfigError(bad_value("kind", kind, ("gate", "diff", "monitor", "report")))
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "title": title or {"gate": "Release gate", "diff": "Fine-tuning diff"}.get(kind, "difflib_models report"),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "tool": {"name": "difflib_models", "version": __version__, "libraries": library_versions(),
                 "command": command},
        "models": {"base": identity_dict(base), "candidate": identity_dict(candidate),
                   "control": identity_dict(control)},
        "hook_points": hook_points_dict(hook_points),
        "layer_convention": LAYER_CONVENTION,
        "seeds": dict(seeds or {}),
        "data": [dict(d) for d in data],
        **{name: None for name in SECTIONS},
        "policy": None,
        "checks": [],
        "verdict": "none",
        "notes": [],
        "timings": {},
    }
    return report


def attach_verdict(report: dict[str, Any], verdict: GateVerdict, policy: Mapping[str, Any] | None = None
                   ) -> dict[str, Any]:
    """Write a gate's typed :class:`~difflib_models.report.records.GateVerdict` into the report document (the JSON
    edge: ``checks``, ``verdict``, ``verdict_reason``) with the policy it was evaluated against (``policy``, the
    policy's own JSON form); returns the document."""
    if not isinstance(verdict, GateVerdict):
        raise ConfigError(bad_value("verdict", type(verdict).__name__, "a GateVerdict record"))
    report.update(verdict.to_dict())
    if policy is not None:
        report["policy"] = dict(policy)
    return report


def attach_persona(report: dict[str, Any], section: PersonaSection) -> dict[str, Any]:
    """Write a gate's typed :class:`~difflib_models.report.records.PersonaSection` into the report document."""
    if not isinstance(section, PersonaSection):
        raise ConfigError(bad_value("persona", type(section).__name__, "a PersonaSection record"))
    report["persona"] = section.to_dict()
    return report


def attach_data_filter(report: dict[str, Any], summary: FilterSummary) -> dict[str, Any]:
    """Write a data-filter run's typed :class:`~difflib_models.persona.filtering.records.FilterSummary` into the
    report document (as ``summary.json`` held it: the engine judges whether its counts are usable)."""
    if not isinstance(summary, FilterSummary):
        raise ConfigError(bad_value("data_filter", type(summary).__name__, "a FilterSummary record"))
    report["data_filter"] = summary.to_dict()
    return report


def attach_alignment(report: dict[str, Any], alignment: CrosscoderAlignment) -> dict[str, Any]:
    """Write the gate's typed :class:`~difflib_models.report.alignment_records.CrosscoderAlignment` into the report
    document (``crosscoder.persona_alignment``, next to a merged diff's crosscoder metrics)."""
    if not isinstance(alignment, CrosscoderAlignment):
        raise ConfigError(bad_value("persona_alignment", type(alignment).__name__, "a CrosscoderAlignment record"))
    report["crosscoder"] = dict(report.get("crosscoder") or {})
    report["crosscoder"]["persona_alignment"] = alignment.to_dict()
    return report


def attach_behavioural(report: dict[str, Any], section: BehaviouralSection) -> dict[str, Any]:
    """Write a gate's typed :class:`~difflib_models.report.behaviour_records.BehaviouralSection` into the report
    document."""
    if not isinstance(section, BehaviouralSection):
        raise ConfigError(bad_value("behavioural", type(section).__name__, "a BehaviouralSection record"))
    report["behavioural"] = section.to_dict()
    return report


DIFF_FORMAT = "difflib_models.diff/1"


def _latent_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``top_latents`` row from a diff pipeline ``top_ft_only_latents`` entry."""
    scaling = row.get("latent_scaling") or {}
    flags = []
    if scaling:
        flags.append("latent_scaling_artifact" if scaling.get("artifact") else "latent_scaling_ok")
    if row.get("dedicated") is not None:  # a dedicated feature crosscoder's latent: fine-tune-only by construction
        flags.append("dedicated")
    contexts = []
    for ex in row.get("examples") or []:
        tokens = [str(t) for t in ex.get("tokens") or []]
        index = ex.get("index")
        if tokens and isinstance(index, int) and 0 <= index < len(tokens):
            contexts.append({"tokens": tokens, "index": index, "activation": finite_or_none(ex.get("activation"))})
    out = {k: v for k, v in row.items() if k not in ("examples", "r")}
    out.update(latent=int(row["latent"]), rel_norm=finite_or_none(row.get("r", row.get("rel_norm"))),
               flags=flags, contexts=contexts)
    return out


def diff_sections(diff: Mapping[str, Any]) -> dict[str, Any]:
    """Report sections from a ``difflib-models diff`` result (``diff.json``, format difflib_models.diff/1)."""
    out: dict[str, Any] = {}
    if isinstance(diff.get("drift"), Mapping) and isinstance(diff["drift"].get("layers"), list):
        drift = dict(diff["drift"])
        drift["layers"] = [{k: v for k, v in row.items() if isinstance(v, int | float | str) or v is None}
                           for row in drift["layers"]]
        out["drift"] = drift
    if isinstance(diff.get("adl"), Mapping):
        out["adl"] = dict(diff["adl"])
    if isinstance(diff.get("weight_deltas"), Mapping):
        out["weights"] = dict(diff["weight_deltas"])
    cc = diff.get("crosscoder")
    if isinstance(cc, Mapping) and cc.get("status") == "trained":
        out["crosscoder"] = {
            "metrics": cc.get("metrics") or {},
            "latent_classes": {k: int(v) for k, v in (cc.get("class_counts") or {}).items()},
            "r_histogram": cc.get("r_histogram"),
            "latent_scaling": cc.get("latent_scaling"),
            "thresholds": cc.get("thresholds"),
            "top_latents": [_latent_row(r) for r in cc.get("top_ft_only_latents") or []],
            "dir": cc.get("dir"),
        }
    elif isinstance(cc, Mapping):
        out["crosscoder_note"] = f"crosscoder {cc.get('status')}: {cc.get('reason', '')}".strip()
    return out


def merge_diff(report: dict[str, Any], diff: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """Copy the sections of a diffing pipeline result (``diff.json``, a directory holding it, or its dict) into
    ``report``: drift, adl, weight deltas and the crosscoder (metrics, latent classes, r histogram, Latent Scaling
    flags, top fine-tune-only latents with their max-activating contexts); provenance the report lacks (hook
    points, identities, text hash) is taken from the diff.
    """
    if not isinstance(diff, Mapping):
        path = Path(diff)
        if path.is_dir():
            path = path / "diff.json"
        if not path.is_file():
            raise ConfigError(bad_value("diff", str(diff), "a diff.json file or a directory holding one"))
        diff = load_json(path, what="--diff")
        if not isinstance(diff, Mapping):
            raise ConfigError(bad_value("--diff", str(path), "a diff.json object",
                                        f"the file holds a JSON {type(diff).__name__}"))
    if diff.get("format") == DIFF_FORMAT:
        sections = diff_sections(diff)
        note = sections.pop("crosscoder_note", None)
        if note:
            report["notes"].append(note)
        report.update(sections)
        texts = diff.get("texts") or {}
        if texts.get("sha256"):
            entry = {"name": "diff texts", "path": str(texts.get("source")), "sha256": str(texts["sha256"]),
                     "n_items": texts.get("n")}
            if entry not in report["data"]:
                report["data"].append(entry)
        models = {"base": (diff.get("identities") or {}).get("base"),
                  "candidate": (diff.get("identities") or {}).get("finetuned")}
    else:
        for name in SECTIONS:
            if diff.get(name) is not None:
                report[name] = diff[name]
        if diff.get("data"):
            report["data"].extend(d for d in diff["data"] if d not in report["data"])
        models = diff.get("models") or {}
    if not report.get("hook_points") and diff.get("hook_points"):
        report["hook_points"] = hook_points_dict(diff["hook_points"])
    if not report.get("seeds") and diff.get("seeds"):
        report["seeds"] = diff["seeds"]
    for side in ("base", "candidate"):
        if report["models"].get(side) is None and models.get(side) is not None:
            report["models"][side] = identity_dict(models[side])
    return report


#: the monitor metrics kept per series (``metrics``): those with thresholds and the null percentile a fail needs
MONITOR_METRICS = ("shift_z", "shift_frac", "null_percentile", "response_null_z", "response_position_shift",
                   "response_headroom")


def monitor_section(data: Any, *, metric: str = "shift_z") -> dict[str, Any]:
    """The ``monitor`` section from a training-time persona monitor time series.

    Each series has ``metric``/``values`` (the main metric, as before) and ``metrics`` with the values of every
    metric in :data:`MONITOR_METRICS` the input has, so the report can plot every thresholded metric.

    Accepts the PersonaMonitor callback's ``persona_monitor.json`` (``series`` rows ``{step, traits: {id:
    {shift_z, ...}}}`` plus ``traits`` descriptions), the report's own ``{"series": [{trait, steps, values}]}``,
    or a flat list of ``{step, trait, <metric>}`` records.
    """
    if isinstance(data, Mapping) and isinstance(data.get("series"), list) and all(
        isinstance(s, Mapping) and "steps" in s for s in data["series"]
    ):
        kept = {k: data[k] for k in ("status", "first_warn_step", "first_fail_step", "stopped_at_step", "thresholds")
                if k in data}
        return {"series": [dict(s) for s in data["series"]], **kept}
    rows = data.get("series") if isinstance(data, Mapping) else data
    if not isinstance(rows, list):
        raise ConfigError(bad_value("monitor", type(data).__name__, "persona_monitor.json, {'series': [...]} or a "
                                    "list of {step, trait, shift_z} records"))
    described = data.get("traits", {}) if isinstance(data, Mapping) else {}
    series: dict[str, dict[str, Any]] = {}

    def add(trait: str, step: Any, values: Mapping[str, Any]) -> None:
        layer = values.get("layer", (described.get(trait) or {}).get("layer"))
        s = series.setdefault(trait, {"trait": trait, "layer": layer, "metric": metric, "steps": [], "values": [],
                                      "metrics": {}})
        n = len(s["steps"])
        s["steps"].append(int(step))
        s["values"].append(finite_or_none(values.get(metric)))
        for key in dict.fromkeys((metric, *MONITOR_METRICS)):
            if key in values or key in s["metrics"]:
                s["metrics"].setdefault(key, [None] * n).append(finite_or_none(values.get(key)))

    for row in rows:
        if not isinstance(row, Mapping) or "step" not in row:
            continue
        if isinstance(row.get("traits"), Mapping):
            for trait, values in row["traits"].items():
                if isinstance(values, Mapping):
                    add(str(trait), row["step"], values)
        elif "trait" in row:
            add(str(row["trait"]), row["step"], row)
    for s in series.values():
        if not s["metrics"]:
            del s["metrics"]
    out: dict[str, Any] = {"series": list(series.values())}
    if isinstance(data, Mapping):
        for key in ("status", "first_warn_step", "first_fail_step", "stopped_at_step", "thresholds"):
            if key in data:
                out[key] = data[key]
    return out


def write_report(
    report: dict[str, Any],
    out_dir: str | Path,
    *,
    renderings: Iterable[str] = RENDERINGS,
    paths: Mapping[str, str | Path] | None = None,
) -> dict[str, Path]:
    """Validate ``report`` and write report.json plus the requested renderings into ``out_dir``.

    ``paths`` overrides single destinations (keys ``json``, ``html``, ``md``, ``junit``); extra copies go to
    those paths in addition to ``out_dir``. Returns the written paths by key.
    """
    renderings = list(renderings)
    for r in renderings:
        if r not in RENDERINGS:
            raise ConfigError(bad_value("renderings", r, RENDERINGS))
    validate_report(report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {"json": atomic_write_json(out_dir / FILENAMES["json"], report)}
    texts: dict[str, str] = {}
    if "md" in renderings:
        texts["md"] = render_markdown(report)
    if "junit" in renderings:
        texts["junit"] = render_junit(report)
    if "html" in renderings:
        texts["html"] = render_html(report)
    for key, text in texts.items():
        written[key] = atomic_write_text(out_dir / FILENAMES[key], text)
    for key, dest in (paths or {}).items():
        if key not in FILENAMES:
            raise ConfigError(bad_value(f"paths[{key!r}]", str(dest), FILENAMES))
        dest = Path(dest)
        if key == "json":
            atomic_write_json(dest, report)
        else:
            if key not in texts:
                texts[key] = _render(key, report)
            atomic_write_text(dest, texts[key])
        written[f"{key}_copy"] = dest
    log.info("wrote report (%s) to %s", ", ".join(sorted(written)), out_dir)
    return written


def _render(key: str, report: Mapping[str, Any]) -> str:
    if key == "md":
        return render_markdown(report)
    if key == "junit":
        return render_junit(report)
    return render_html(report)


def load_report(path: str | Path, *, validate: bool = True) -> dict[str, Any]:
    """Read report.json (a file or a directory holding one) and validate it."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAMES["json"]
    if not path.is_file():
        raise ConfigError(bad_value("report", str(path), "an existing report.json or a directory holding one",
                                    "run `difflib-models gate ... --out DIR` first"))
    report = load_json(path, what="--from")
    if validate:
        validate_report(report)
    return report


def rerender(
    src: str | Path, out_dir: str | Path | None = None, *, renderings: Iterable[str] = RENDERINGS
) -> dict[str, Path]:
    """Re-render HTML/Markdown/JUnit from an existing report.json (nothing is recomputed). A directory holding only
    a ``diff.json`` (the output of ``difflib-models diff``) gets a report.json built from it first."""
    src = Path(src)
    if src.is_dir() and not (src / FILENAMES["json"]).is_file() and (src / "diff.json").is_file():
        report = merge_diff(new_report("diff"), src / "diff.json")  # a `difflib-models diff` output folder
    else:
        report = load_report(src)
    if out_dir is None:
        out_dir = src if src.is_dir() else src.parent
    return write_report(report, out_dir, renderings=renderings)
