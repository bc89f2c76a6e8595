"""Fixtures of the diffing tests."""

from __future__ import annotations

import pytest

from tests.diffing._helpers import make_word_tokenizer


@pytest.fixture
def word_tokenizer():  # noqa: ANN201
    return make_word_tokenizer()
