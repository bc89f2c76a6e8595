"""The hooks layer: the only code of the library that touches a forward hook.

It sits below capture, persona, crosscoder, diffing and the callbacks, and owns four things:

- block outputs (:mod:`.outputs`): read or replace the hidden state whatever the block returns (a Tensor in
  transformers 5, a tuple in 4.x);
- early stop (:mod:`.early_stop`): a forward ends after the deepest block a reader needs only where
  :func:`can_stop_early` allows (never under FSDP, DDP, torch.compile or offloading hooks);
- probe mode (:mod:`.probe`): eval + no grad, every module's own training flag restored exactly;
- registration (:mod:`.registry`), reading (:mod:`.reader`) and residual edits (:mod:`.residual`), all as
  context managers (or attach/remove pairs) that remove their hooks in ``finally``.

No module outside ``difflib_models/hooks/`` calls ``register_forward_hook`` or ``register_forward_pre_hook``
(``tests/hooks/test_no_hooks_elsewhere.py``).
"""

from __future__ import annotations

from difflib_models.hooks.early_stop import EarlyStop, StopForward, can_stop_early, run_forward
from difflib_models.hooks.outputs import block_hidden, edit_output, with_block_hidden
from difflib_models.hooks.probe import probe_mode
from difflib_models.hooks.reader import (
    BlockReader,
    Select,
    all_positions,
    last_token_index,
    projection,
    read_blocks,
    token_index,
    token_mean,
    token_rows,
)
from difflib_models.hooks.registry import HookSet
from difflib_models.hooks.residual import add_to_block, replace_in_block

__all__ = [
    "BlockReader",
    "EarlyStop",
    "HookSet",
    "Select",
    "StopForward",
    "add_to_block",
    "all_positions",
    "block_hidden",
    "can_stop_early",
    "edit_output",
    "last_token_index",
    "probe_mode",
    "projection",
    "read_blocks",
    "replace_in_block",
    "run_forward",
    "token_index",
    "token_mean",
    "token_rows",
    "with_block_hidden",
]
