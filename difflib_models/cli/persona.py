"""`difflib-models persona extract|validate|export|filter|steer`: persona vectors from the command line.

Every command prints its result as one JSON document on stdout (``--json`` states it explicitly; logs and progress
go to stderr) and writes its artefacts atomically. Errors travel as library exceptions: cli/app.py maps ConfigError to exit 2 and other
DifflibErrors to exit 3.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import typer

from difflib_models.cli.options import (
    JSON_HELP,
    Aggregator,
    FilterMethod,
    FilterReadout,
    PersonaMode,
    SteerPositions,
    SteerUnit,
    emit_json,
    enum_value,
    resolve_persona_mode,
    stdout_for_results,
)
from difflib_models.datasets import DATASETS, load_dataset
from difflib_models.errors import ConfigError, bad_value
from difflib_models.io import atomic_write_json
from difflib_models.outputs import check_outputs
from difflib_models.persona.contracts import VALIDATION_LEVELS

persona_app = typer.Typer(
    name="persona",
    help="Persona vectors: extract and validate trait directions, filter training data, steer generations.",
    no_args_is_help=True,
)

_MODEL_HELP = "HF dir, hub id, .gguf file or peft adapter dir (default: smollm2-135m-instruct)."
_TRAIT_HELP = "Built-in trait id (sycophancy, evil, hallucination), a trait YAML, an Anthropic evals .jsonl or a CAA .json."


def register(app: typer.Typer) -> None:
    app.add_typer(persona_app, name="persona")


def _echo_json(obj: Any) -> None:
    emit_json(obj)


_MODE_HELP = ("auto (default): an imported statement file (tuning split): every mode, mode and layer chosen on the "
              "tuning split; else paired if the trait has paired responses, else prompt_contrast. paired: trait vs "
              "neutral responses, the only mode whose vectors got verdict 'real' for all three built-in traits on "
              "SmolLM2 (docs/persona.md); prompt_contrast: instruction contrast, real for evil only; ab: answer-letter "
              "contrast, does not beat the nulls there (held-out AUROC 0.605 for evil).")


def _load(model: str | None, device: str) -> Any:
    from difflib_models.models.loading import load_model

    return load_model(model, device=device)


def _vector_base(out: Path) -> Path:
    return out.with_suffix("") if out.suffix in (".safetensors", ".json") else out


def _validation_path(base: Path) -> Path:
    return base.with_name(base.name + ".validation.json")


# ------------------------------------------------------------------------------------------------ extract
@persona_app.command("extract")
@stdout_for_results
def extract_command(
    trait: str = typer.Option(..., "--trait", "-t", help=_TRAIT_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Vector file: writes OUT.safetensors + OUT.json sidecar."),
    model: str | None = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    mode: PersonaMode = typer.Option(PersonaMode.auto, "--mode", help=_MODE_HELP),
    aggregator: Aggregator = typer.Option(Aggregator.mean_diff, "--aggregator",
                                          help="How pairs become a direction. Under --mode auto on an imported trait "
                                               "with a tuning split the default also tries pair_logistic and logistic "
                                               "and keeps the best one on the tuning split. For a data-filter vector use "
                                               "logistic (it ranks answers across prompts; docs/data-filtering.md)."),
    layers: str = typer.Option("all", "--layers", "-l", help="Blocks to extract: '3', '0,2', '2-4', 'all', 'mid', '-1'."),
    validation: str = typer.Option("full", "--validation",
                                   help="quick (held-out AUROC + nulls) | full (+ steering dose-response, slow) "
                                        "| none. Recorded in the vector file."),
    no_validate: bool = typer.Option(False, "--no-validate", hidden=True, help="Alias of --validation none."),
    n_null: int = typer.Option(200, "--n-null", min=10, help="Null draws (permutation and random directions)."),
    filter_readout: FilterReadout = typer.Option(
        FilterReadout.auto, "--filter-readout",
        help="Filter validation candidates (traits with paired_responses): auto = also stacked readouts over spans "
             "of blocks when the trait has >= 100 paired responses to fit them on; block = the per-block "
             "directions only; stacked = try stacked readouts whatever the count (docs/data-filtering.md)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    device: str = typer.Option("cpu", "--device"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " (persona commands print their JSON result "
                                 "either way; logs and progress always go to stderr)"),
) -> None:
    """Extract a trait's per-layer directions; validate them on the held-out split and write the vector file
    plus OUT.validation.json (per-layer AUROC, null percentiles and the selected layer)."""
    from difflib_models.persona.extraction.extractor import PersonaExtractor
    from difflib_models.persona.extraction.vectors import check_output_path
    from difflib_models.persona.traits import load_trait

    if validation not in ("quick", "full", "none"):
        raise ConfigError(bad_value("--validation", validation, ("quick", "full", "none")))
    validation = "none" if no_validate else validation
    validate = validation != "none"
    tr = load_trait(trait)  # bad trait -> ConfigError before the model loads
    # an imported statement trait (tuning split) under --mode auto: every mode fitted, mode and layer chosen on the
    # tuning split, the held-out AUROC measured on evaluation (persona/validation/tuned.py)
    tuned = enum_value(mode) == "auto" and tr.has_tuning and validate
    mode, aggregator = resolve_persona_mode(enum_value(mode), tr), enum_value(aggregator)
    extractor = PersonaExtractor(mode=mode, aggregator=aggregator, layers=layers, batch_size=batch_size)
    base = _vector_base(out)
    tensors, sidecar = check_output_path(base)  # never over an input (trait file, weights): refused before compute
    vpath = _validation_path(base)
    check_outputs({"--out": tensors, "--out sidecar": sidecar, "--out validation": vpath},
                  {"--model": model, "--trait": trait})
    if validate and vpath.exists() and not sidecar.is_file():
        raise ConfigError(bad_value("--out", str(out), "a path whose OUT.validation.json is free or ours",
                                    f"{vpath} exists without a vector file beside it; choose another --out"))
    loaded = _load(model, device)
    t0 = time.perf_counter()
    if tuned:
        from difflib_models.persona.validation.tuned import TUNED_AGGREGATORS, tuned_extract_and_validate

        vs, report, sel = tuned_extract_and_validate(
            loaded, tr, layers=layers, level=validation, n_null=n_null, batch_size=batch_size,
            aggregators=TUNED_AGGREGATORS if aggregator == "mean_diff" else (aggregator,))
        mode, extractor, aggregator = sel.mode, sel.extractors[sel.mode], sel.aggregator
        seconds = time.perf_counter() - t0
    else:
        extractor.fit(loaded, tr)
        seconds = time.perf_counter() - t0
        vs = extractor.to_vector_set()
        report = (_validate(loaded, vs, extractor.trait_features(loaded, tr), tr, n_null=n_null, level=validation)
                  if validate else None)
    if report is not None:
        vs = vs.with_validation(report.summary)
    if validate and tr.has_paired:
        from difflib_models.persona.filtering.validation import filter_validate_trait

        stacked = {"auto": None, "block": False, "stacked": True}[enum_value(filter_readout)]
        vs = filter_validate_trait(loaded, vs, tr, stacked=stacked, batch_size=batch_size)
    tensor_path = vs.save(base)
    result: dict[str, Any] = {
        "trait": tr.id, "mode": mode, "aggregator": aggregator, "model": loaded.identity.name,
        "layers": extractor.layers_, "n_pos": extractor.n_pos_, "n_neg": extractor.n_neg_,
        "extraction_seconds": round(seconds, 3), "vectors": str(tensor_path), "sidecar": str(sidecar),
        "selected_layer": vs.selected_layer, "selection_reason": vs.selection_reason, "validation_level": validation,
        "filter_validation": vs.filter_validation.to_dict() if vs.filter_validation else None,
    }
    if report is not None:
        atomic_write_json(vpath, report.to_dict())
        result.update(validation=str(vpath), verdict=report.verdict, warnings=report.warnings,
                      auroc_by_layer={str(k): v for k, v in report.summary.auroc_by_layer.items()},
                      selection_split=report.summary.selection_split,
                      nulls={n.name: {"q95": n.q95, "passes": n.passes} for n in report.summary.nulls})
        if report.summary.tuning:
            best: dict[str, Any] = {}
            for c in report.summary.tuning:
                if c.mode not in best or c.auroc > best[c.mode]["auroc"]:
                    best[c.mode] = {"layer": c.layer, "auroc": c.auroc, "aggregator": c.aggregator}
            result["tuning_best_per_mode"] = best
    _echo_json(result)


def _validate(loaded: Any, vs: Any, features: Any, trait: Any, *, n_null: int, level: str = "full") -> Any:
    from difflib_models.persona.validation import validate_vectors
    from difflib_models.persona.validation.tuned import DEFAULT_MAX_STEER_ITEMS

    # imported traits: the steering check reads a capped number of held-out A/B items (docs/persona.md)
    cap = DEFAULT_MAX_STEER_ITEMS if getattr(trait, "has_tuning", False) else None
    return validate_vectors(vs, features, level=level, loaded=loaded, trait=trait, n_null=n_null,
                            max_steer_items=cap)


# ------------------------------------------------------------------------------------------------ validate
@persona_app.command("validate")
@stdout_for_results
def validate_command(
    vectors: Path = typer.Option(..., "--vectors", "-V", help="Vector file (.safetensors with its .json sidecar)."),
    trait: str | None = typer.Option(None, "--trait", "-t", help=_TRAIT_HELP + " Default: the file's trait; a file "
                                     "whose layer was chosen on a tuning split needs the trait file it was "
                                     "extracted from (recorded hash)."),
    model: str | None = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    out: Path | None = typer.Option(None, "--out", "-o", help="Validation JSON (default: VECTORS.validation.json)."),
    validation: str = typer.Option("full", "--validation",
                                   help="quick (held-out AUROC + nulls) | full (+ steering dose-response, slow)."),
    n_null: int = typer.Option(200, "--n-null", min=10),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    device: str = typer.Option("cpu", "--device"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " (persona commands print their JSON result "
                                 "either way; logs and progress always go to stderr)"),
) -> None:
    """Re-validate a vector file's directions on a trait's held-out split (the file must belong to --model).
    The extraction and evaluation features are read from the model; the directions are the file's (nothing is
    re-fitted) and the vector file is never written: the report goes to --out. A file whose layer was chosen on
    a tuning split (persona extract --mode auto on an imported file) is re-measured by the tuned procedure: its
    recorded layer only, on the evaluation split of the same trait file (--trait required), against both nulls;
    every other file by the built-in one (every layer, layer re-selected). The output's "procedure" says which."""
    from difflib_models.persona.extraction import PersonaExtractor
    from difflib_models.persona.extraction.vectors import PersonaVectorSet, vector_paths
    from difflib_models.persona.traits import load_trait
    from difflib_models.persona.validation.tuned import is_tuned, revalidate_tuned, tuned_trait

    if validation not in VALIDATION_LEVELS:
        raise ConfigError(bad_value("--validation", validation, VALIDATION_LEVELS))
    path = out or _validation_path(_vector_base(vectors))
    inputs = {p.resolve() for p in vector_paths(vectors)} | ({Path(trait).resolve()} if trait else set())
    if path.resolve() in inputs:
        raise ConfigError(bad_value("--out", str(path), "a file that is not an input",
                                    "the vector file and the trait file are never written over"))
    # a tuned file needs its own trait file: checked before the model loads
    stored = PersonaVectorSet.load(vectors)
    tuned = is_tuned(stored)
    tr = tuned_trait(stored, trait, argument="--trait") if tuned else None
    loaded = _load(model, device)
    vs = PersonaVectorSet.load(vectors, expect_model=loaded)
    if tr is not None:
        report = revalidate_tuned(loaded, vs, tr, level=validation, n_null=n_null, batch_size=batch_size)
    else:
        tr = load_trait(trait or vs.trait_id)
        # features only (the file's mode and layers; generate_judge needs a judge, read its A/B contrast instead)
        reader = PersonaExtractor(mode=vs.mode if vs.mode in ("ab", "prompt_contrast", "paired") else "ab",
                                  layers=vs.layers, batch_size=batch_size,
                                  assistant_prefix=vs.assistant_prefix)
        report = _validate(loaded, vs, reader.trait_features(loaded, tr), tr, n_null=n_null, level=validation)
    procedure = "tuned" if tuned else "built-in"
    atomic_write_json(path, {**report.to_dict(), "procedure": procedure,
                             "selection_split": report.summary.selection_split})
    _echo_json({"trait": tr.id, "vectors": str(vectors), "validation": str(path), "procedure": procedure,
                "verdict": report.verdict, "level": report.level, "selected_layer": report.selected_layer,
                "selection_split": report.summary.selection_split, "selection_reason": report.selection_reason,
                "auroc_by_layer": {str(k): v for k, v in report.summary.auroc_by_layer.items()},
                "nulls": {n.name: {"q95": n.q95, "max_over_layers": n.max_over_layers, "passes": n.passes}
                          for n in report.summary.nulls},
                "warnings": report.warnings})


# ------------------------------------------------------------------------------------------------ export
@persona_app.command("export")
@stdout_for_results
def export_command(
    vectors: Path = typer.Option(..., "--vectors", "-V", help="Vector file (.safetensors with its .json sidecar)."),
    fmt: str = typer.Option(..., "--format", help="repeng (GGUF) | steering-vectors | safetensors."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (suffix set by the format)."),
    layers: str = typer.Option("all", "--layers", "-l", help="'all', 'selected', '3', '0,2,5' or '4-12'."),
    unit: bool | None = typer.Option(None, "--unit/--raw",
                                     help="Unit or raw vectors (default: unit for repeng, raw otherwise)."),
    model_hint: str | None = typer.Option(None, "--model-hint", help="repeng model_hint (default: model name)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " (persona commands print their JSON result "
                                 "either way; logs and progress always go to stderr)"),
) -> None:
    """Export a vector file for the steering libraries (layer i = decoder block i in every format)."""
    from difflib_models.models.hookpoints import parse_layers
    from difflib_models.persona.extraction.export import export_vectors
    from difflib_models.persona.extraction.vectors import PersonaVectorSet

    vs = PersonaVectorSet.load(vectors)
    if layers.strip().lower() == "selected":
        chosen = [vs._layer(None)]
    else:
        chosen = None if layers.strip().lower() == "all" else parse_layers(layers, max(vs.layers) + 1)
    written = export_vectors(vs, out, fmt=fmt, layers=chosen, unit=unit, hint=model_hint)
    _echo_json({"format": fmt, "files": [str(p) for p in written], "trait": vs.trait_id,
                "layers": chosen or vs.layers, "layer_convention": vs.layer_convention})


# ------------------------------------------------------------------------------------------------ filter
@persona_app.command("filter")
@stdout_for_results
def filter_command(
    vectors: Path = typer.Option(..., "--vectors", "-V", help="Vector file (.safetensors with its .json sidecar)."),
    data: Path = typer.Option(..., "--data", "-d", help="Chat JSONL ({'messages': [...]} per line) to score."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory: scores.jsonl, summary.json, kept.jsonl. "
                             "Scores are saved in chunks under OUT/.partial while scoring: re-running the same "
                             "command after a crash scores only the rows not yet saved."),
    model: str | None = typer.Option(None, "--model", "-m", help="Base model. " + _MODEL_HELP),
    method: FilterMethod | None = typer.Option(None, "--method",
                                               help="proxy (last prompt token) | exact (own greedy answer) | raw (no "
                                                    "baseline). Default: the file's filter-validated method, else "
                                                    "proxy."),
    layer: int | None = typer.Option(None, "--layer", help="Block to read (default: the file's filter-validated "
                                     "readout, one block or a stacked span of blocks; else its selected layer)."),
    top_k: int | None = typer.Option(None, "--top-k", min=1, help="Flag the k highest-scoring samples."),
    top_frac: float | None = typer.Option(None, "--top-frac", help="Flag this fraction of samples (0-1]."),
    percentile: float | None = typer.Option(
        None, "--percentile", help="Flag samples above this percentile of the reference set (paper: 95)."),
    reference: str = typer.Option(
        "clean-reference", "--reference",
        help="Reference chat JSONL for --percentile, or a built-in data set name."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    max_length: int = typer.Option(512, "--max-length", min=8),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens", min=1, help="Greedy answer length (--method exact)."),
    device: str = typer.Option("cpu", "--device"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " (persona commands print their JSON result "
                                 "either way; logs and progress always go to stderr)"),
    strict: bool = typer.Option(False, "--strict",
                                help="Refuse (exit 2) a vector file whose filter-validation AUROC is missing or < 0.8."),
) -> None:
    """Score every sample's projection difference on a persona vector through the BASE model and write the
    per-sample scores, a summary and the filtered data set (the input file is never modified). Without a
    selection option nothing is flagged (report only). Prints the vector file's filter-validation AUROC (trait vs
    non-trait answers to the same prompt, held out) and warns when it is missing or below 0.8."""
    from difflib_models.persona.extraction.vectors import PersonaVectorSet, vector_paths
    from difflib_models.persona.filtering.journal import ScoreJournal
    from difflib_models.persona.filtering.scoring import (
        FilterConfig,
        default_method,
        filter_samples,
        read_chat_jsonl,
        write_outputs,
    )

    chosen = [name for name, v in (("--top-k", top_k), ("--top-frac", top_frac), ("--percentile", percentile))
              if v is not None]
    if len(chosen) > 1:
        raise ConfigError(bad_value("selection", chosen, "at most one of --top-k, --top-frac, --percentile"))
    mode = {"--top-k": "top_k", "--top-frac": "top_frac", "--percentile": "threshold"}.get(
        chosen[0] if chosen else "", "report")
    config = FilterConfig(method=enum_value(method) if method is not None else "proxy", mode=mode,
                          percentile=percentile if percentile is not None else 95.0, top_k=top_k, top_frac=top_frac, batch_size=batch_size, max_length=max_length,
                          max_new_tokens=max_new_tokens)
    samples = read_chat_jsonl(data)  # a bad file fails before the model loads
    ref_samples = _reference(reference) if mode == "threshold" else None
    if out.exists() and not out.is_dir():
        raise ConfigError(bad_value("--out", str(out), "a directory", "this path is an existing file"))
    check_outputs({"--out": out}, {"--model": model, "--vectors": list(vector_paths(vectors)), "--data": data,
                                   "--reference": reference})
    loaded = _load(model, device)
    vs = PersonaVectorSet.load(vectors, expect_model=loaded)
    if method is None:
        config = dataclasses.replace(config, method=default_method(vs))
    _check_filter_validation(vs, layer, strict)
    # finished chunks of scores are kept in OUT/.partial: a re-run after a crash scores only the rest
    journal = out / PARTIAL_DIR
    result = filter_samples(loaded, vs, samples, config, layer=layer, reference=ref_samples, journal=journal)
    paths = write_outputs(result, out, source=data)
    ScoreJournal.remove(journal)
    _echo_json(dict(result.summary.to_dict(), outputs={k: str(v) for k, v in paths.items()}))


PARTIAL_DIR = ".partial"
"""Where ``persona filter`` keeps finished chunks of scores until its outputs are written (resume after a crash)."""
FILTER_RECIPE = "persona extract --mode paired --aggregator logistic"
"""How to make a data-filter vector (docs/data-filtering.md, "Which aggregator for a filter vector")."""


def _check_filter_validation(vs: Any, layer: int | None, strict: bool) -> None:
    """Print the file's filter validation on stderr; warn when missing or low, refuse (ConfigError) with --strict."""
    from difflib_models.persona.filtering.validation import LOW_AUROC, describe, is_low

    record = vs.filter_validation
    typer.echo(describe(record), err=True)
    low = is_low(record)
    if record is not None and layer is not None and (record.readout_layers or layer != record.filter_layer):
        validated = (f"stacked readout over {record.readout_span}" if record.readout_span
                     else f"layer {record.filter_layer}")
        typer.echo(f"warning: --layer {layer} is not the filter-validated {validated}; its tuning "
                   f"AUROC is {record.filter_auroc.get(layer, float('nan')):.3f}", err=True)
    if low and strict:
        raise ConfigError(bad_value("--vectors", vs.trait_id, f"a vector file with filter-validation AUROC >= "
                                    f"{LOW_AUROC}", f"re-extract with `{FILTER_RECIPE}` on a trait with "
                                    "paired_responses, or drop --strict to filter anyway"))
    if low:
        typer.echo("warning: this vector is not shown to rank trait-matching answers above others; treat the "
                   f"filter's ranking as unvalidated (a filter vector: `{FILTER_RECIPE}`)", err=True)


def _reference(spec: str) -> list[Any]:
    from difflib_models.persona.filtering.scoring import read_chat_jsonl, samples_from_rows

    if spec in DATASETS:
        return samples_from_rows(load_dataset(spec), name=spec)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(bad_value("--reference", spec, list(DATASETS) + ["a chat .jsonl file"]))
    return read_chat_jsonl(path)


# ------------------------------------------------------------------------------------------------ steer
@persona_app.command("steer")
@stdout_for_results
def steer_command(
    vectors: Path = typer.Option(..., "--vectors", "-V", help="Vector file (.safetensors with its .json sidecar)."),
    prompt: str = typer.Option(..., "--prompt", help="User message to answer."),
    alpha: list[float] = typer.Option(..., "--alpha", "-a", help="Steering strength; repeat for a dose-response."),
    model: str | None = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    layer: int | None = typer.Option(None, "--layer", help="Block to steer (default: the file's selected layer)."),
    unit: SteerUnit = typer.Option(SteerUnit.norm, "--unit",
                                   help="norm: alpha x median residual norm along the unit vector; raw: alpha x vector."),
    positions: SteerPositions = typer.Option(SteerPositions.response, "--positions", help="Positions steered."),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens", min=1),
    system: str | None = typer.Option(None, "--system", help="Optional system prompt."),
    device: str = typer.Option("cpu", "--device"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " (persona commands print their JSON result "
                                 "either way; logs and progress always go to stderr)"),
) -> None:
    """Generate greedy answers to --prompt while adding alpha * v at one layer (alpha 0 = unsteered)."""
    import torch

    from difflib_models.persona.extraction.vectors import PersonaVectorSet
    from difflib_models.persona.steering.hook import POSITIONS, median_residual_norm, steer
    from difflib_models.persona.traits.chat import encode_prompt

    unit, positions = enum_value(unit), enum_value(positions)
    if unit not in ("norm", "raw"):
        raise ConfigError(bad_value("--unit", unit, ["norm", "raw"]))
    if positions not in POSITIONS:
        raise ConfigError(bad_value("--positions", positions, POSITIONS))
    loaded = _load(model, device)
    vs = PersonaVectorSet.load(vectors, expect_model=loaded)
    layer = vs.selected_layer if layer is None else layer
    if layer is None:
        raise ConfigError(bad_value("--layer", None, vs.layers, "The vector file selects no layer; pass --layer."))
    vector = vs.vector(layer)
    tok = loaded.tokenizer
    enc = encode_prompt(tok, prompt, system=system)
    ids = torch.tensor([enc.ids], device=loaded.device)
    mask = torch.ones_like(ids)
    ref_norm = median_residual_norm(loaded.model, ids, mask, layer) if unit == "norm" else None
    outputs = []
    for a in alpha:
        with torch.no_grad(), steer(loaded.model, layer, vector, a, positions, reference_norm=ref_norm):
            gen = loaded.model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                        max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
        text = tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)
        outputs.append({"alpha": a, "text": text})
    _echo_json({"trait": vs.trait_id, "layer": layer, "unit": unit, "reference_norm": ref_norm,
                "positions": positions, "prompt": prompt, "generations": outputs})
