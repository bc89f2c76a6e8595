from __future__ import annotations

import pytest

from difflib_models.errors import ConfigError
from difflib_models.models.batching import pad_batch


def test_pad_batch_left_right_and_empty_rows() -> None:
    ids, am = pad_batch([[4, 5, 6], [7]], pad_token_id=0, padding_side="left")
    assert ids.tolist() == [[4, 5, 6], [0, 0, 7]] and am.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, am = pad_batch([[4, 5, 6], [7]], pad_token_id=0)
    assert ids.tolist() == [[4, 5, 6], [7, 0, 0]] and am.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, am = pad_batch([[4, 5, 6], []], pad_token_id=9)
    assert ids.tolist() == [[4, 5, 6], [9, 9, 9]] and am.tolist() == [[1, 1, 1], [0, 0, 0]]
    ids, am = pad_batch([[]], pad_token_id=9, padding_side="left")
    assert ids.tolist() == [[9]] and am.tolist() == [[0]]


@pytest.mark.parametrize(("sequences", "side", "match"), [([[1]], "middle", "padding_side"), ([], "right", "sequences")])
def test_pad_batch_rejects_bad_input(sequences: list[list[int]], side: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        pad_batch(sequences, pad_token_id=0, padding_side=side)
