"""Model diffing: paired harvesting, cheap baselines (ADL, drift, weight deltas), the `diff` pipeline and a small
LoRA fine-tune helper used by tests and demos.

Modules: ``sources`` (text sources), ``harvest`` (paired activation stores), ``adl`` (Activation Difference Lens),
``drift`` (per-layer drift and next-token KL), ``weights`` (weight-delta norms), ``finetune`` (LoRA helper),
``pipeline`` (harvest -> baselines -> crosscoder -> diff.json). Submodules import torch; this package does not.
"""
