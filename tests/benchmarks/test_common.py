"""benchmarks.common: the seed-list parser every benchmark's command line goes through."""

from __future__ import annotations

import pytest

from benchmarks.common import int_list


def test_int_list_parses_comma_lists_and_names_the_argument_of_a_bad_item() -> None:
    assert int_list("0,1, 2,,") == [0, 1, 2] and int_list("") == [] and int_list("-3") == [-3]
    with pytest.raises(SystemExit, match=r"--held-out-seeds: 'x' is not an integer"):
        int_list("0,x", "--held-out-seeds")
