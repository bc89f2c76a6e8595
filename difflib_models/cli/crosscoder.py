"""`difflib-models crosscoder train` and `difflib-models crosscoder analyze`.

Activations come from a paired activation store (``--store``, see `difflib-models diff` / snapshot) or from a
safetensors file with one tensor ``acts`` [N, M, d] (``--acts``). Errors travel as library exceptions:
cli/app.py maps ConfigError to exit 2 and other DifflibErrors to exit 3.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from difflib_models.cli.options import (
    JSON_HELP,
    Activation,
    deprecated,
    emit_json,
    enum_value,
    stdout_for_results,
    store_layers,
)
from difflib_models.crosscoder.config import CrosscoderConfig, config_default
from difflib_models.crosscoder.report import report_section
from difflib_models.errors import ConfigError, bad_value
from difflib_models.integrations.mlflow import mlflow_logger
from difflib_models.io import atomic_write_json
from difflib_models.outputs import check_outputs

_LAYERS_HELP = "Store layers: '3', '0,2', '2-4', 'mid' (middle stored layer), '-1' (last stored), 'all' (default)."

crosscoder_app = typer.Typer(help="Train and analyse crosscoders over paired activations.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(crosscoder_app, name="crosscoder")


def _csv_ints(text: str | None, argument: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(bad_value(argument, text, "comma-separated integers, e.g. '3' or '2,5'")) from None


def _source(store: Path | None, acts: Path | None, sides: str | None, layers: str | None) -> Any:
    from difflib_models.crosscoder.sources import StoreSource, TensorSource

    if (store is None) == (acts is None):
        raise ConfigError(bad_value("--store/--acts", (store, acts), "exactly one of them"))
    if acts is not None:
        if not acts.is_file():
            raise ConfigError(bad_value("--acts", str(acts), "an existing .safetensors file"))
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(acts))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for a truncated file
            raise ConfigError(bad_value("--acts", str(acts), "a readable .safetensors file",
                                        f"{exc}; write the file again")) from None
        if "acts" not in tensors:
            raise ConfigError(bad_value("--acts", sorted(tensors), "a file holding a tensor named 'acts' [N, M, d]"))
        return TensorSource(tensors["acts"])
    side_list = [s for s in sides.split(",") if s] if sides else None
    layer_list = None
    if layers is not None:
        from difflib_models.store.reader import ActivationStore

        layer_list = store_layers(layers, ActivationStore.open(store).layers)
    return StoreSource(store, sides=side_list, layers=layer_list)


@crosscoder_app.command("train")
@stdout_for_results
def train_command(
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (crosscoder/, checkpoints/, summary)."),
    store: Path | None = typer.Option(None, "--store", help="Paired activation store directory."),
    acts: Path | None = typer.Option(None, "--acts", help="Or: safetensors file with 'acts' [N, M, d]."),
    sides: str | None = typer.Option(None, "--sides", help="Store sides, comma-separated (default: all)."),
    layers: str | None = typer.Option(None, "--layers", "-l", help=_LAYERS_HELP),
    activation: Activation = typer.Option(Activation(config_default("activation")), "--activation",
                                          help="Sparsity."),
    dict_size: int = typer.Option(config_default("dict_size"), "--dict-size", help="Number of latents."),
    k: int = typer.Option(config_default("k"), "--k", help="Active latents per token (TopK / BatchTopK)."),
    steps: int = typer.Option(config_default("steps"), "--steps", help="Optimisation steps (CrosscoderConfig)."),
    batch_size: int = typer.Option(config_default("batch_size"), "--tokens-per-step",
                                   help="Tokens per optimisation step (capped at the tokens available)."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default 1e-4 / sqrt(n / 2^14))."),
    l1_coeff: float = typer.Option(config_default("l1_coeff"), "--l1-coeff", help="L1 penalty weight (l1 variant)."),
    exclusive_latents: int = typer.Option(
        0, "--exclusive-latents", help="Dedicated feature crosscoder: latents reserved per model (0: off)."
    ),
    exclusive_penalty: float = typer.Option(
        1.0, "--exclusive-penalty", help="Sparsity price of a dedicated latent relative to a shared one."
    ),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from checkpoints/last.ckpt."),
    mlflow_uri: str | None = typer.Option(None, "--mlflow-uri", help="Log to this MLflow tracking URI."),
    mlflow_experiment: str = typer.Option("difflib-models", "--mlflow-experiment",
                                          help="MLflow experiment name (with --mlflow-uri)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    mlflow_old: str | None = typer.Option(None, "--mlflow", hidden=True),
    batch_size_old: int | None = typer.Option(None, "--batch-size", hidden=True),
) -> None:
    """Train a crosscoder (Lightning; checkpoints and resume in --out) and write its evaluation summary."""
    mlflow_uri = deprecated(mlflow_uri, mlflow_old, old_flag="--mlflow URI", new_flag="--mlflow-uri URI")
    if batch_size_old is not None:
        batch_size = deprecated(None, batch_size_old, old_flag="--batch-size", new_flag="--tokens-per-step") or 1
    from difflib_models.crosscoder.analysis import evaluate
    from difflib_models.crosscoder.lightning_module import train_crosscoder
    check_outputs({"--out": out}, {"--store": store, "--acts": acts})
    source = _source(store, acts, sides, layers)
    names = list(getattr(source, "source_names", []) or [])
    n_models = len(getattr(source, "sides", [])) or 2
    config = CrosscoderConfig(
        d_model=source.d_model, n_sources=source.n_sources, dict_size=dict_size, activation=enum_value(activation), k=k,
        steps=steps, batch_size=min(batch_size, source.n_tokens), lr=lr, l1_coeff=l1_coeff, seed=seed,
        n_models=n_models, source_names=names, exclusive_latents=exclusive_latents,
        exclusive_penalty=exclusive_penalty,
    )
    logger = None
    if mlflow_uri:  # artifacts of a sqlite store's new experiment go to OUT/mlartifacts, not ./mlruns in the cwd
        logger = mlflow_logger(out, command="crosscoder", experiment_name=mlflow_experiment, tracking_uri=mlflow_uri)
    cc = train_crosscoder(source, config, out, logger=logger, resume=resume)
    metrics = evaluate(cc, source)
    metrics.pop("fire_counts")
    summary = {"crosscoder": str(out / "crosscoder"), "config": config.to_dict(), "metrics": metrics}
    atomic_write_json(out / "train_summary.json", summary)
    if logger is not None:
        _log_final_to_mlflow(logger, config.to_dict(), metrics, out / "train_summary.json")
    emit_json({"out": str(out), **metrics})


def _log_final_to_mlflow(logger: Any, config: dict[str, Any], metrics: dict[str, Any], summary: Path) -> None:
    """The run's config as params, the held-out evaluation as ``eval/*`` metrics and the summary as an artifact
    (the per-step ``train/*`` metrics came through Lightning)."""
    logger.log_hyperparams({k: v for k, v in config.items() if isinstance(v, str | int | float | bool)})
    logger.log_metrics({f"eval/{k}": float(v) for k, v in metrics.items()
                        if isinstance(v, int | float) and not isinstance(v, bool)})
    logger.experiment.log_artifact(logger.run_id, str(summary))


@crosscoder_app.command("analyze")
@stdout_for_results
def analyze_command(
    crosscoder: Path = typer.Option(..., "--crosscoder", "-c", help="Folder written by `crosscoder train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Analysis JSON file to write."),
    store: Path | None = typer.Option(None, "--store", help="Paired activation store directory."),
    acts: Path | None = typer.Option(None, "--acts", help="Or: safetensors file with 'acts' [N, M, d]."),
    sides: str | None = typer.Option(None, "--sides", help="Store sides, comma-separated (default: all)."),
    layers: str | None = typer.Option(None, "--layers", "-l", help=_LAYERS_HELP),
    ft_only: float = typer.Option(0.9, "--ft-only", help="r above this: fine-tune-only."),
    base_only: float = typer.Option(0.1, "--base-only", help="r below this: base-only."),
    shared_low: float = typer.Option(0.4, "--shared-low"),
    shared_high: float = typer.Option(0.6, "--shared-high"),
    artifact_threshold: float = typer.Option(0.3, "--artifact-threshold", help="Latent Scaling nu cut-off."),
    examples: int = typer.Option(0, "--examples", help="Max-activating contexts per ft-only latent (store only)."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", help="Tokenizer dir to render the contexts."),
    max_tokens: int = typer.Option(65536, "--max-tokens", help="Tokens evaluated."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Relative decoder norms and classes, FVE / L0 / dead latents, Latent Scaling and (optionally) contexts."""
    from difflib_models.crosscoder.analysis import ClassThresholds, analyze_crosscoder
    from difflib_models.crosscoder.latent_scaling import latent_scaling
    from difflib_models.crosscoder.model import Crosscoder
    check_outputs({"--out": out}, {"--crosscoder": crosscoder, "--store": store, "--acts": acts,
                                   "--tokenizer": tokenizer})
    thresholds = ClassThresholds(base_only=base_only, ft_only=ft_only, shared_low=shared_low,
                                 shared_high=shared_high)
    cc = Crosscoder.load(crosscoder / "crosscoder" if (crosscoder / "crosscoder").is_dir() else crosscoder)
    source = _source(store, acts, sides, layers)
    if (source.n_sources, source.d_model) != (cc.config.n_sources, cc.config.d_model):
        raise ConfigError(
            bad_value("activations (n_sources, d_model)", (source.n_sources, source.d_model),
                      [(cc.config.n_sources, cc.config.d_model)], "analyse on the activations it was trained on")
        )
    result = analyze_crosscoder(cc, source, thresholds=thresholds, max_tokens=max_tokens)
    ft_latents = [item["latent"] for item in result["latents"] if item["class"] == "ft_only"]
    result["latent_scaling"] = latent_scaling(cc, source, ft_latents, artifact_threshold=artifact_threshold,
                                              max_tokens=max_tokens)
    if examples > 0 and ft_latents:
        if store is None:
            raise ConfigError(bad_value("--examples", examples, "0 with --acts", "contexts need a store's tokens"))
        result["examples"] = _examples(cc, source, store, ft_latents, tokenizer, examples, max_tokens)
    result["report_section"] = report_section(result, result["latent_scaling"], result.get("examples"))
    atomic_write_json(out, result)
    counts = result["class_counts"]
    emit_json({"out": str(out), "class_counts": counts, "fve": result["metrics"].get("fve"),
               "n_artifacts": result["latent_scaling"]["n_artifacts"]})


def _examples(cc: Any, source: Any, store: Path, latents: list[int], tokenizer: str | None, top_n: int,
              max_tokens: int) -> dict[str, Any]:
    import torch

    from difflib_models.crosscoder.examples import max_activating_examples
    from difflib_models.store.reader import ActivationStore

    st = ActivationStore.open(store)
    parts, tables = [], []
    n = 0
    for batch in st.iter_batches(4096, sides=source.sides, layers=source.layers, shuffle=False):
        acts = batch["acts"]
        parts.append(acts.reshape(acts.shape[0], -1, acts.shape[-1]))
        # prompt_id is unique across the store (seq_index is per capture batch)
        tables.append({"token_ids": batch["token_ids"], "seq_index": batch["prompt_id"],
                       "pos_index": batch["pos_index"]})
        n += acts.shape[0]
        if n >= max_tokens:
            break
    table = {k: torch.cat([t[k] for t in tables]) for k in tables[0]}
    tok = None
    if tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer)
    return max_activating_examples(cc, torch.cat(parts), table, latents, tok, top_n=top_n)


@crosscoder_app.command("export")
@stdout_for_results
def export_command(
    crosscoder: Path = typer.Option(..., "--crosscoder", "-c", help="Folder written by `crosscoder train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write: dictionary_learning's ae.pt + config.json."),
    layout: str = typer.Option("crosscoder", "--layout",
                               help="crosscoder (its CrossCoder class, l1 only) | sae (0.1.0 AutoEncoder / "
                                    "AutoEncoderTopK / BatchTopKSAE over the concatenated sources)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Export a trained crosscoder to dictionary_learning's format (docs/interop.md)."""
    from difflib_models.crosscoder.interop import export_dictionary_learning
    from difflib_models.crosscoder.model import Crosscoder

    cc = Crosscoder.load(crosscoder / "crosscoder" if (crosscoder / "crosscoder").is_dir() else crosscoder)
    folder = export_dictionary_learning(cc, out, layout=layout)
    meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    emit_json({"out": str(folder), "layout": layout, "dict_class": meta["trainer"]["dict_class"]})
