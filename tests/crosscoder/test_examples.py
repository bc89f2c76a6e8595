from __future__ import annotations

import json

import torch

from difflib_models.crosscoder.examples import max_activating_examples

from .conftest import identity_crosscoder


class _Tok:
    def decode(self, ids):
        return "".join("<&>" if i == 7 else f" t{i}" for i in ids)


def test_top_contexts_in_order_with_marked_token():
    cc = identity_crosscoder(d=4)
    n = 60
    acts = torch.zeros(n, 2, 4) - 0.1  # nothing fires on the + latent of (source 1, coord 0)...
    planted = {17: 3.0, 42: 5.0, 5: 1.0}  # ...except these rows
    for row, value in planted.items():
        acts[row, 1, 0] = value
    table = {"token_ids": torch.arange(n) % 10, "seq_index": torch.arange(n) // 20, "pos_index": torch.arange(n) % 20}
    latent = (1 * 4 + 0) * 2  # + half of source 1, coordinate 0
    res = max_activating_examples(cc, acts, table, [latent], _Tok(), top_n=5, before=2, after=1, batch_size=16)
    json.dumps(res)
    ctx = res[str(latent)]
    assert [c["activation"] for c in ctx] == [5.0, 3.0, 1.0]  # only rows that fired, best first
    assert [(c["seq"], c["pos"]) for c in ctx] == [(2, 2), (0, 17), (0, 5)]
    first = ctx[0]
    assert first["tokens"] == [" t0", " t1", " t2", " t3"] and first["index"] == 2
    assert first["text"] == " t0 t1[[ t2]] t3"
    # contexts stop at the sequence boundary; HTML is escaped
    row17 = ctx[1]
    assert row17["tokens"] == [" t5", " t6", "<&>", " t8"] and row17["index"] == 2
    assert "&lt;&amp;&gt;" in row17["html"] and "<mark>&lt;&amp;&gt;</mark>" in row17["html"]
