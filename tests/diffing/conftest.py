"""Fixtures of the diffing tests."""

from __future__ import annotations

import pytest

from tests.diffing._helpers import make_word_tokenizer


@pytest.fixture
def word_tokenizer():  # noqa: ANN201
    return make_word_tokenizer()


@pytest.fixture(autouse=True)
def _one_torch_thread():  # noqa: ANN202
    """Tiny models gain nothing from intra-op threads; one thread avoids oversubscribing the 2-core CI box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
