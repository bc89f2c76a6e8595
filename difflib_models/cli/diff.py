"""`difflib-models diff`: what did fine-tuning change? Paired harvest, baselines (weight deltas, drift, next-token
KL, Activation Difference Lens) and a crosscoder, written to ``OUT/diff.json``.

Errors travel as library exceptions: cli/app.py maps ConfigError to exit 2 and other DifflibErrors to exit 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from difflib_models.cli.options import (
    JSON_HELP,
    Activation,
    deprecated,
    emit_json,
    enum_value,
    say,
    stdout_for_results,
)
from difflib_models.crosscoder.config import QUICK_PRESET, config_default
from difflib_models.errors import ConfigError, bad_value
from difflib_models.outputs import check_outputs


def register(app: typer.Typer) -> None:
    app.command("diff")(diff_command)


@stdout_for_results
def diff_command(
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (diff.json, store, crosscoder; resumable)."),
    base: str | None = typer.Option(
        None, "--base", "-b", help="Base model: HF dir, hub id, .gguf file (default: smollm2-135m-instruct)."
    ),
    finetuned: str | None = typer.Option(
        None, "--candidate", help="Fully fine-tuned model to compare with --base (same spec forms as --base)."
    ),
    adapter: str | None = typer.Option(
        None, "--adapter", help="peft adapter directory: the candidate is --base plus this adapter."
    ),
    layers: str = typer.Option("mid", "--layers", "-l", help="Blocks to compare: '3', '0,2', '2-4', 'all', 'mid', '-1'."),
    texts: str = typer.Option(
        "generic", "--prompts", "-p", help="Built-in prompt set name, or a .txt (one per line) / .jsonl file."
    ),
    max_texts: int | None = typer.Option(None, "--max-texts", min=1, help="Use at most this many texts."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Texts per forward pass."),
    max_length: int = typer.Option(128, "--max-length", min=2, help="Truncate texts to this many tokens."),
    adl_k: int = typer.Option(5, "--adl-k", min=1, help="ADL: first k tokens of each text."),
    no_kl: bool = typer.Option(False, "--no-kl", help="Skip the next-token KL per position."),
    no_crosscoder: bool = typer.Option(False, "--no-crosscoder", help="Baselines only; no crosscoder."),
    dict_size: int | None = typer.Option(None, "--dict-size", min=2, help="Crosscoder latents (default 8 x d)."),
    k: int = typer.Option(config_default("k"), "--k", min=1, help="Crosscoder (Batch)TopK k."),
    activation: Activation = typer.Option(
        Activation(config_default("activation")), "--activation", help="Crosscoder sparsity (l1 for --exclusive-latents)."
    ),
    steps: int = typer.Option(
        QUICK_PRESET["steps"], "--steps", min=1,
        help="Crosscoder training steps (diff's quick preset, crosscoder/config.py QUICK_PRESET; `crosscoder train` "
             "uses the full CrosscoderConfig default).",
    ),
    cc_batch_size: int = typer.Option(QUICK_PRESET["batch_size"], "--cc-batch-size", min=1,
                                      help="Crosscoder tokens per step."),
    top_latents: int = typer.Option(10, "--top-latents", min=1, help="Fine-tune-only latents with contexts."),
    exclusive_latents: int = typer.Option(
        0, "--exclusive-latents", min=0, help="Dedicated feature crosscoder: latents reserved per model (0: off)."
    ),
    exclusive_penalty: float = typer.Option(
        1.0, "--exclusive-penalty", help="Sparsity price of a dedicated latent relative to a shared one."
    ),
    device: str = typer.Option("cpu", "--device", help="Torch device for the models."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " The document is diff.json."),
    finetuned_old: str | None = typer.Option(None, "--finetuned", "-f", hidden=True),
    texts_old: str | None = typer.Option(None, "--texts", hidden=True),
) -> None:
    """Compare a candidate model (a full fine-tune, or --base plus an adapter) with its base and write
    OUT/diff.json."""
    finetuned = deprecated(finetuned, finetuned_old, old_flag="--finetuned", new_flag="--candidate")
    if texts_old is not None:
        texts = deprecated(None, texts_old, old_flag="--texts", new_flag="--prompts") or texts
    if finetuned is not None and adapter is not None:
        raise ConfigError(
            bad_value("--adapter", adapter, hint="give either --candidate (a full fine-tune) or --adapter, not both")
        )
    if finetuned is None and adapter is None:
        raise ConfigError(
            bad_value("--candidate", None, "a fine-tuned model spec, or --adapter DIR",
                      "say what to compare the base model with")
        )
    if out.exists() and not out.is_dir():
        raise ConfigError(bad_value("--out", str(out), "a directory", "this path is an existing file"))
    check_outputs({"--out": out}, {"--base": base, "--finetuned": finetuned, "--adapter": adapter, "--texts": texts})
    from difflib_models.diffing.pair import ModelPair
    from difflib_models.diffing.pipeline import DiffConfig, run_diff
    from difflib_models.models.loading import load_model

    config = DiffConfig(
        out=out, layers=layers, texts=texts, max_texts=max_texts, batch_size=batch_size, max_length=max_length,
        adl_k=adl_k, kl=not no_kl, crosscoder=not no_crosscoder, dict_size=dict_size, k=k, steps=steps,
        activation=enum_value(activation), cc_batch_size=cc_batch_size, top_latents=top_latents,
        exclusive_latents=exclusive_latents, exclusive_penalty=exclusive_penalty,
    )
    if adapter is not None:
        pair = ModelPair.from_adapter(load_model(base, adapter=adapter, device=device))
    else:
        pair = ModelPair(load_model(base, device=device), load_model(finetuned, device=device))
    result = run_diff(pair, config)
    if as_json:
        emit_json(result)
        return
    say(_summary(result, out))


def _summary(r: dict[str, Any], out: Path) -> str:
    lines = [
        f"diff of {r['identities']['finetuned']['name']} against {r['identities']['base']['name']} "
        f"({r['pair_mode']}), layers {', '.join(f'blocks.{i}' for i in r['layers'])}, "
        f"{r['store']['n_tokens']} tokens from {r['texts']['n']} texts",
    ]
    for d in r["drift"]["layers"]:
        lines.append(
            f"  blocks.{d['layer']}: mean-diff {d['mean_diff_norm']:.4g} (rel {d['relative_mean_diff']:.3g}), "
            f"cos {d['mean_cosine']:.4f}, CKA {d['cka']:.4f}"
        )
    kl = r["drift"].get("next_token_kl")
    if kl:
        lines.append(f"  next-token KL(ft||base): mean {kl['mean']:.4g}, max {kl['max']:.4g} nats")
    for layer, a in r["adl"]["layers"].items():
        toks = ", ".join(repr(t["token"]) for t in a["top_tokens"][:10])
        lines.append(f"  ADL blocks.{layer} top tokens: {toks}")
    cc = r["crosscoder"]
    if cc.get("status") == "trained":
        m = cc.get("metrics", {})
        lines.append(
            f"  crosscoder: FVE {m.get('fve', float('nan')):.3f}, L0 {m.get('l0', float('nan')):.1f}, classes "
            + ", ".join(f"{k} {v}" for k, v in cc["class_counts"].items())
            + f"; {cc['latent_scaling']['n_artifacts']} of {cc['latent_scaling']['n_ft_only']} ft-only flagged "
            "as artifacts"
        )
    else:
        lines.append(f"  crosscoder: {cc.get('status')} ({cc.get('reason', '')})")
    lines.append(f"wrote {out / 'diff.json'}")
    return "\n".join(lines)
