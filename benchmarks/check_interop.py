"""Our dictionary_learning exports opened by the real PyPI package (``dictionary-learning`` 0.1.0).

Trains a small crosscoder per activation (l1, topk, batchtopk) on synthetic pairs, exports each with
``export_dictionary_learning(..., layout="sae")``, then runs a worker under the peer virtualenv
(``benchmarks/.venv-peer``, see benchmarks/setup_peer.sh) that opens every folder with the
dispatch of ``dictionary_learning.utils.load_dictionary`` and encodes/decodes the same raw activations. Writes
``benchmarks/results/interop.json`` with the largest differences against our own encode/decode:

    .venv/bin/python -m benchmarks.check_interop [--peer-python PATH]

0.1.0 has no ``CrossCoder`` class (it lives on dictionary_learning's crosscoder branch, PR #28, and its forks):
``--crosscoder-source dictionary.py`` (e.g. ``git show <pr-28-head>:dictionary_learning/dictionary.py``) also
exports an l1 crosscoder with ``layout="crosscoder"`` and opens it with that file's ``CrossCoder.from_pretrained``;
tests/crosscoder/test_interop.py checks the layout against the class's formulas. The worker never imports
difflib_models.

``--steering-libs DIR`` (``pip install --no-deps --target DIR repeng steering-vectors``) also exports persona
vectors for the real tiny model stories260k and steers it with repeng's ``ControlVector.import_gguf`` +
``ControlModel`` and steering-vectors' ``SteeringVector.apply``: the logits must equal our own ``steer()`` at the
same block, and differ when our hook sits one block later (so an off-by-one would show).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER_PYTHON = ROOT / "benchmarks" / ".venv-peer" / "bin" / "python"
ACTIVATIONS = ("l1", "topk", "batchtopk")


def worker(folders: list[str], crosscoder_source: str | None) -> None:
    """Runs under the peer venv: encode/decode ``inputs.pt`` of each folder with the peer's own classes."""
    import dictionary_learning
    import torch
    from dictionary_learning.dictionary import AutoEncoder
    from dictionary_learning.trainers.batch_top_k import BatchTopKSAE
    from dictionary_learning.trainers.top_k import AutoEncoderTopK

    def load_dictionary(folder: str) -> tuple:
        # dictionary_learning.utils.load_dictionary's dispatch (utils itself imports `datasets`, absent in the
        # --no-deps peer venv): config.json's trainer.dict_class picks the class, trainer.k its k
        config = json.loads((Path(folder) / "config.json").read_text())
        trainer, path = config["trainer"], str(Path(folder) / "ae.pt")
        if trainer["dict_class"] == "CrossCoder":
            import importlib.util

            spec = importlib.util.spec_from_file_location("dl_crosscoder_dictionary", crosscoder_source)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.CrossCoder.from_pretrained(path), config
        if trainer["dict_class"] == "AutoEncoder":
            return AutoEncoder.from_pretrained(path, device="cpu"), config
        cls = {"AutoEncoderTopK": AutoEncoderTopK, "BatchTopKSAE": BatchTopKSAE}[trainer["dict_class"]]
        return cls.from_pretrained(path, k=trainer["k"], device="cpu"), config

    report = {"dictionary_learning_file": dictionary_learning.__file__}
    for folder in folders:
        ae, config = load_dictionary(folder)
        inputs = torch.load(Path(folder) / "inputs.pt", weights_only=True)
        x = inputs["x"] if config["trainer"]["dict_class"] == "CrossCoder" else inputs["x_flat"]
        with torch.no_grad():
            f = ae.encode(x)
            x_hat = ae.decode(f)
        torch.save({"f": f.contiguous(), "x_hat": x_hat.contiguous()}, Path(folder) / "peer_out.pt")
        report[Path(folder).name] = {"class": type(ae).__name__, "dict_class": config["trainer"]["dict_class"]}
    print(json.dumps(report))


def steering_worker(model_dir: str, tmp: str) -> None:
    """Runs with repeng and steering-vectors importable: our exports steer a real model as our own hook does."""
    import importlib.metadata as md

    import numpy as np
    import torch

    if not hasattr(np, "float_"):  # repeng 0.4.0 (PyPI) annotates with np.float_, removed in NumPy 2
        np.float_ = np.float64
    from repeng import ControlModel, ControlVector
    from steering_vectors import SteeringVector
    from transformers import AutoModelForCausalLM

    from difflib_models.persona.extraction.export import export_vectors
    from difflib_models.persona.extraction.vectors import PersonaVectorSet
    from difflib_models.persona.steering.hook import steer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    n, d = model.config.num_hidden_layers, model.config.hidden_size
    gen = torch.Generator().manual_seed(3)
    vs = PersonaVectorSet(trait_id="planted", vectors={i: torch.randn(d, generator=gen) * 2 for i in range(n)},
                          model={"name": Path(model_dir).name, "weight_hash": "unused"}, mode="test")
    # one row: repeng 0.4.0 reshapes position_ids to [batch, T], but transformers 5 passes them as [1, T]
    ids = torch.randint(0, model.config.vocab_size, (1, 12), generator=gen)
    layer, coeff = n // 2, 3.0

    def logits(**kw) -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=ids, **kw).logits

    base = logits()
    with steer(model, layer, vs.unit(layer), alpha=coeff):
        ours_unit = logits()
    with steer(model, layer, vs.vector(layer), alpha=coeff):
        ours_raw = logits()
    out: dict = {"model": Path(model_dir).name, "layer": layer, "coeff": coeff,
                 "versions": {"repeng": md.version("repeng"), "steering-vectors": md.version("steering-vectors")},
                 "steering_effect_max_abs": float((ours_unit - base).abs().max())}

    (gguf_path,) = export_vectors(vs, Path(tmp) / "cv", fmt="repeng")
    cv = ControlVector.import_gguf(str(gguf_path))
    cm = ControlModel(model, [layer])
    cm.set_control(cv, coeff)
    with torch.no_grad():
        theirs = cm(input_ids=ids).logits
    cm.reset()
    cm.unwrap()
    out["repeng"] = {
        "layers_equal": sorted(cv.directions) == vs.layers,
        "max_abs_diff_directions": max(float((torch.from_numpy(cv.directions[i].copy()) - vs.unit(i)).abs().max())
                                       for i in vs.layers),
        "max_abs_diff_logits_vs_ours": float((theirs - ours_unit).abs().max()),
    }
    sv_path, _ = export_vectors(vs, Path(tmp) / "sv", fmt="steering-vectors")
    from safetensors.torch import load_file

    acts = {int(k.rsplit(".", 1)[1]): v for k, v in load_file(sv_path).items()}
    sv = SteeringVector(layer_activations={layer: acts[layer]}, layer_type="decoder_block")
    with sv.apply(model, multiplier=coeff):
        theirs = logits()
    out["steering_vectors"] = {
        "layers_equal": sorted(acts) == vs.layers,
        "max_abs_diff_logits_vs_ours": float((theirs - ours_raw).abs().max()),
    }
    # the same vector one block off changes the logits by about as much as steering itself: a shift would show
    with steer(model, layer + 1, vs.vector(layer), alpha=coeff):
        out["one_block_off_max_abs_diff"] = float((logits() - ours_raw).abs().max())
    print(json.dumps(out))


def _steering_check(libs: Path, model_dir: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(libs)]))
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, __file__, "--steering-worker", str(model_dir), tmp],
                              capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr[-3000:]}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    tol = 1e-4 * max(1.0, res["steering_effect_max_abs"])
    res["ok"] = bool(
        res["repeng"]["layers_equal"] and res["steering_vectors"]["layers_equal"]
        and res["repeng"]["max_abs_diff_logits_vs_ours"] <= tol
        and res["steering_vectors"]["max_abs_diff_logits_vs_ours"] <= tol
        and res["one_block_off_max_abs_diff"] > 100 * tol
    )
    return res


def _peer_version(python: Path) -> str | None:
    proc = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('dictionary-learning'))"],
                          capture_output=True, text=True)
    return proc.stdout.strip() or None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--crosscoder-source", type=Path, default=None,
                   help="a dictionary.py defining CrossCoder (dictionary_learning's crosscoder branch): also check "
                        "the crosscoder layout with it")
    p.add_argument("--crosscoder-source-label", default=None, help="where --crosscoder-source came from (recorded)")
    p.add_argument("--steering-libs", type=Path, default=None,
                   help="a folder with repeng and steering-vectors (pip install --no-deps --target DIR repeng "
                        "steering-vectors): also check the persona exports with them")
    p.add_argument("--steering-model", type=Path, default=ROOT.parent / "shared" / "models" / "stories260k")
    p.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--steering-worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.steering_worker is not None:
        steering_worker(*args.steering_worker)
        return
    if args.worker is not None:
        worker(args.worker, str(args.crosscoder_source) if args.crosscoder_source else None)
        return

    import torch

    from benchmarks.common import write_results
    from difflib_models.crosscoder.config import CrosscoderConfig
    from difflib_models.crosscoder.interop import export_dictionary_learning
    from difflib_models.crosscoder.lightning_module import train_crosscoder
    from difflib_models.crosscoder.sources import TensorSource
    from difflib_models.crosscoder.synthetic import make_synthetic_pairs

    torch.set_num_threads(1)
    if not args.peer_python.exists():
        sys.exit(f"{args.peer_python} missing: run benchmarks/setup_peer.sh first")
    pairs = make_synthetic_pairs(32, n_tokens=8000, seed=0)
    x_raw = pairs.acts[:512].float() * 3.0  # raw scale differs from the normalised training scale
    results: dict = {"peer_version": _peer_version(args.peer_python),
                     "crosscoder_layout": "dictionary-learning 0.1.0 has no CrossCoder class; checked with "
                                          "--crosscoder-source when given, and against the class's formulas in "
                                          "tests/crosscoder/test_interop.py",
                     "crosscoder_source": args.crosscoder_source_label or (
                         str(args.crosscoder_source) if args.crosscoder_source else None),
                     "n_inputs": int(x_raw.shape[0]), "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folders, ours = [], {}
        variants = [(act, "sae") for act in ACTIVATIONS]
        if args.crosscoder_source:
            variants.append(("l1", "crosscoder"))
        for act, layout in variants:
            cfg = CrosscoderConfig(d_model=32, n_sources=2, dict_size=64, activation=act, k=4, lr=3e-3,
                                   l1_coeff=0.5, steps=args.steps, batch_size=256, dead_steps=50, seed=0)
            cc = train_crosscoder(TensorSource(pairs.acts), cfg, Path(tmp) / f"train_{act}", resume=False).eval()
            with torch.no_grad():
                cc.norm_scale.mul_(torch.tensor([0.5, 2.0]))  # non-trivial scalars to fold
                f = cc.encode(cc.normalize(x_raw))
                y = cc.denormalize(cc.decode(f))
            name = f"{layout}_{act}"
            folder = export_dictionary_learning(cc, Path(tmp) / name, layout=layout)
            torch.save({"x_flat": x_raw.reshape(x_raw.shape[0], -1).contiguous(), "x": x_raw.contiguous()},
                       folder / "inputs.pt")
            folders.append(str(folder))
            ours[name] = (cc, f, y)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env.pop("PYTHONPATH", None)
        cmd = [str(args.peer_python), __file__, "--worker", *folders]
        if args.crosscoder_source:
            cmd += ["--crosscoder-source", str(args.crosscoder_source)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            results["error"] = proc.stderr[-3000:]
        else:
            results["peer"] = json.loads(proc.stdout.strip().splitlines()[-1])
            for (act, _layout), folder in zip(variants, folders, strict=True):
                name = Path(folder).name
                cc, f, y = ours[name]
                out = torch.load(Path(folder) / "peer_out.pt", weights_only=True)
                y_peer = out["x_hat"].reshape_as(y)
                row = {
                    "dict_class": results["peer"][name]["dict_class"],
                    "max_abs_diff_reconstruction": float((y_peer - y).abs().max()),
                    "reconstruction_scale": float(y.abs().max()),
                    "same_active_latents": bool(torch.equal(out["f"] > 0, f > 0)),
                    "mean_l0": float((f > 0).float().sum(-1).mean()),
                }
                if _layout == "crosscoder":
                    row["max_abs_diff_codes"] = float((out["f"] - f).abs().max())
                elif act != "l1":  # 0.1.0's AutoEncoder.from_pretrained renormalises the decoder: codes rescale
                    row["max_abs_diff_codes"] = float((out["f"] - f * cc._score_weight().detach()).abs().max())
                row["ok"] = row["same_active_latents"] and row["max_abs_diff_reconstruction"] <= 1e-3 * max(
                    1.0, row["reconstruction_scale"])
                results["variants"][name] = row
    results["all_ok"] = bool(results["variants"]) and all(r["ok"] for r in results["variants"].values())
    if args.steering_libs:
        results["persona_exports"] = _steering_check(args.steering_libs, args.steering_model)
        results["all_ok"] = results["all_ok"] and bool(results["persona_exports"].get("ok"))
    path = write_results("interop", results)
    print(json.dumps(results, indent=2))
    print(path, file=sys.stderr)
    if not results["all_ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
