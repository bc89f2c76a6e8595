"""The layer convention: what ``blocks.i`` means everywhere in the library. Torch-free, so that light readers
(reports) record the same text as the model code."""

__all__ = ["LAYER_CONVENTION"]

LAYER_CONVENTION = "blocks.i = residual stream after decoder block i (0-indexed); HF hidden_states[i+1]"
