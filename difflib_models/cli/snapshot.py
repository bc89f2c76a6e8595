"""`difflib-models snapshot` (capture activations into a store) and `difflib-models inspect` (summarise one).

Errors travel as library exceptions: cli/app.py maps ConfigError to exit 2 and other DifflibErrors to exit 3:
a store locked by another writer (StoreLockedError, a ConfigError) is exit 2; a corrupt store or a manifest that
lists a file outside the store (CorruptStoreError, a StoreError) is exit 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from difflib_models.cli.options import (
    JSON_HELP,
    Dtype,
    emit_json,
    enum_value,
    results_stream,
    say,
    stdout_for_results,
)
from difflib_models.errors import ConfigError, StoreError, bad_value

_DTYPES = tuple(d.value for d in Dtype)


def register(app: typer.Typer) -> None:
    app.command("snapshot")(snapshot_command)
    app.command("inspect")(inspect_command)


@stdout_for_results
def snapshot_command(
    out: Path = typer.Option(
        ..., "--out", "-o", help="Store directory (created; an existing store resumes)."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="HF dir, hub id, .gguf file, peft adapter dir (default: smollm2-135m-instruct).",
    ),
    layers: str = typer.Option(
        "mid", "--layers", "-l", help="Blocks to capture: '3', '0,2', '2-4', 'all', 'mid', '-1'."
    ),
    prompts: str = typer.Option(
        "generic", "--prompts", "-p", help="Built-in prompt set name, or a .txt (one per line) / .jsonl file."
    ),
    positions: str = typer.Option("all", "--positions", help="'all', 'last_prompt' or 'first_k:K'."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Prompts per forward pass."),
    max_length: int = typer.Option(128, "--max-length", min=1, help="Truncate prompts to this many tokens."),
    adapter: str | None = typer.Option(None, "--adapter", help="peft adapter directory applied on --model."),
    shard_tokens: int = typer.Option(65536, "--shard-tokens", min=1, help="Tokens per shard (memory bound)."),
    dtype: Dtype = typer.Option(Dtype.float32, "--dtype", help="Storage dtype."),
    device: str = typer.Option("cpu", "--device", help="Torch device for the forward passes."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " The document is the store's summary."),
) -> None:
    """Capture residual-stream activations of a model on a prompt set into a crash-safe, resumable store."""
    dtype = enum_value(dtype)
    if dtype not in _DTYPES:
        raise ConfigError(bad_value("--dtype", dtype, _DTYPES))
    if out.exists() and not out.is_dir():
        raise ConfigError(bad_value("--out", str(out), "a directory", "this path is an existing file"))
    from difflib_models.capture.pipeline import snapshot
    from difflib_models.capture.positions import parse_positions
    from difflib_models.capture.prompts import load_prompts
    from difflib_models.models.loading import load_model

    parse_positions(positions)  # fail on a bad spec before loading anything
    texts = list(load_prompts(prompts))
    loaded = load_model(model, adapter=adapter, device=device)
    texts = list(load_prompts(prompts, tokenizer=loaded.tokenizer))  # chat records: the model's chat template
    before = _stored_prompts(out)
    store = snapshot(
        loaded,
        texts,
        layers,
        out,
        positions=positions,
        batch_size=batch_size,
        max_length=max_length,
        shard_tokens=shard_tokens,
        dtype=dtype,
    )
    if as_json:
        from difflib_models.store.reader import ActivationStore

        summary = ActivationStore.open(out).summary()
        summary.update(n_texts=len(texts), resumed_prompts=before)
        emit_json(summary)
        return
    resumed = f" (resumed: {before} prompts were already stored)" if before else ""
    say(
        f"{out}: {store.n_tokens} tokens from {len(texts)} prompts of {loaded.identity.name} "
        f"(layers {', '.join(map(str, store.layers))}) in {store.n_shards} shard(s){resumed}"
    )


def _stored_prompts(out: Path) -> int:
    from difflib_models.store.manifest import manifest_path, read_manifest

    if not manifest_path(out).is_file():
        return 0
    try:
        return len(read_manifest(out).prompt_ids())
    except StoreError:
        return 0  # snapshot() reports the problem with the directory


@stdout_for_results
def inspect_command(
    path: Path = typer.Argument(..., help="Store directory."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    verify: bool = typer.Option(
        False, "--verify", help="Check every shard's sha256 now (exit 3 if corrupt); without it they are not read."
    ),
) -> None:
    """Summarise an activation store: model, tokenizer, layers, tokens, shards, normalisation scales."""
    from difflib_models.store.reader import ActivationStore

    if not path.exists():
        raise ConfigError(bad_value("PATH", str(path), "an existing store directory"))
    store = ActivationStore.open(path)
    if verify:
        for index in range(store.n_shards):
            store.load_shard(index, ["prompt_id"])
    summary = store.summary()
    summary["verified"] = verify
    summary["checksums"] = (
        f"verified ({store.n_shards} shards)" if verify else "not verified (use --verify)"
    )
    if as_json:
        emit_json(summary)
        return
    _print_table(summary)


def _print_table(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"activation store {escape(s['path'])}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    status = "yes" if s["complete"] else "NO: interrupted; rerun the same snapshot command to finish it"
    rows: list[tuple[str, str]] = [("complete", status)]
    for side in s["sides"]:
        ident = s["identities"].get(side, {})
        digest = str(ident.get("weight_hash", "?"))
        rows.append((f"model ({side})", f"{ident.get('name', '?')}  weights {digest[:23]}"))
    rows += [
        ("tokenizer", f"{s['tokenizer_name']}  vocab {s['vocab_hash'][:12]}"),
        ("layers", ", ".join(f"blocks.{i}" for i in s["layers"])),
        ("hook points", str(s["hook_points"].get("block_path", "?")) + ".{i}"),
        ("layer convention", s["layer_convention"]),
        ("d_model / dtype", f"{s['d_model']} / {s['dtype']}"),
        ("tokens / prompts", f"{s['n_tokens']} / {s['n_prompts']}"),
        ("shards", f"{s['n_shards']} ({s['bytes'] / 1e6:.2f} MB)"),
        ("checksums", s["checksums"]),
    ]
    for side, per_layer in s["norm_scale"].items():
        scales = ", ".join(
            f"{layer}: {v:.4g}" if v is not None else f"{layer}: -" for layer, v in per_layer.items()
        )
        rows.append((f"norm scale ({side})", scales))
    capture = s["extra"].get("capture")
    if capture:
        rows.append(("capture", ", ".join(f"{k}={v}" for k, v in capture.items())))
    rows.append(("format / library", f"{s['format_version']} / difflib-models {s['library_version']}"))
    for key, value in rows:
        table.add_row(key, escape(str(value)))
    Console(file=results_stream(), soft_wrap=False).print(table)
