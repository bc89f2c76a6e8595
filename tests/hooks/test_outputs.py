"""Block outputs: a Tensor (transformers 5), a tuple (4.x), a list or a ModelOutput-like object."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from difflib_models.errors import DifflibError
from difflib_models.hooks import block_hidden, edit_output, with_block_hidden


def test_read_and_rewrap_every_output_shape() -> None:
    x, y, extra = torch.randn(2, 3, 4), torch.randn(2, 3, 4), object()
    assert block_hidden(x) is x and with_block_hidden(x, y) is y
    out = with_block_hidden((x, extra), y)
    assert block_hidden((x, extra)) is x and isinstance(out, tuple) and out[0] is y and out[1] is extra
    out = with_block_hidden([x, extra], y)
    assert isinstance(out, list) and out[0] is y and out[1] is extra
    assert block_hidden(SimpleNamespace(last_hidden_state=x)) is x
    with pytest.raises(DifflibError, match="NoneType"):
        block_hidden(None)
    with pytest.raises(DifflibError, match="str"):
        with_block_hidden("nope", y)


def test_edit_output_keeps_the_container() -> None:
    x, extra = torch.ones(1, 2, 3), ("cache",)
    hook = edit_output(lambda h: h * 2)
    out = hook(None, (), (x, extra))
    assert isinstance(out, tuple) and torch.equal(out[0], 2 * x) and out[1] is extra
    assert torch.equal(hook(None, (), x), 2 * x)
