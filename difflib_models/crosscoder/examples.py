"""Max-activating contexts per latent, from stored activations and their token table.

The token table holds, for every activation row, ``token_ids``, ``seq_index`` and ``pos_index`` (as the
activation store writes them). A context is the tokens of the same sequence around the activating token; the
result lists the token strings, the index of the activating token, a plain-text rendering with the token
marked ``[[...]]`` and an HTML rendering (escaped, activating token in ``<mark>``).
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from difflib_models.crosscoder.model import Crosscoder
from difflib_models.errors import ConfigError, bad_value


def _token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    if tokenizer is None:
        return [f"<{i}>" for i in ids]
    return [tokenizer.decode([int(i)]) for i in ids]


@torch.no_grad()
def top_activations(
    cc: Crosscoder, batches: Iterator[Tensor], latents: Sequence[int], *, top_n: int = 10
) -> tuple[Tensor, Tensor]:
    """Over raw activation batches [B, M, d] in token-table order: the top ``top_n`` activation values and row
    indices per latent, as ([J, top_n] values, [J, top_n] rows); rows are -1 where fewer tokens fired."""
    idx = torch.tensor([int(j) for j in latents], dtype=torch.long)
    best_v = torch.full((len(idx), top_n), -1.0)
    best_r = torch.full((len(idx), top_n), -1, dtype=torch.long)
    offset = 0
    cc.eval()
    for raw in batches:
        f = cc.encode(cc.normalize(raw.float()))[:, idx].T  # [J, B]
        rows = torch.arange(offset, offset + f.shape[1]).expand_as(f)
        cat_v = torch.cat([best_v, f], dim=1)
        cat_r = torch.cat([best_r, rows], dim=1)
        k = min(top_n, cat_v.shape[1])
        best_v, pos = torch.topk(cat_v, k, dim=1)
        best_r = cat_r.gather(1, pos)
        offset += f.shape[1]
    best_r = torch.where(best_v > 0, best_r, torch.full_like(best_r, -1))
    return best_v, best_r


def max_activating_examples(
    cc: Crosscoder,
    acts: Tensor,
    token_table: dict[str, Tensor],
    latents: Sequence[int],
    tokenizer: Any = None,
    *,
    top_n: int = 10,
    before: int = 10,
    after: int = 3,
    batch_size: int = 4096,
) -> dict[str, Any]:
    """Top contexts of each latent. ``acts`` [N, M, d] raw activations aligned with ``token_table``
    (``token_ids``, ``seq_index``, ``pos_index`` of length N). JSON-able: ``{str(latent): [context, ...]}``
    with each context ``{"activation", "seq", "pos", "tokens", "index", "text", "html"}``."""
    for key in ("token_ids", "seq_index", "pos_index"):
        if key not in token_table:
            raise ConfigError(bad_value("token_table", sorted(token_table), "token_ids, seq_index, pos_index"))
        if token_table[key].shape[0] != acts.shape[0]:
            raise ConfigError(
                bad_value(f"token_table[{key!r}] length", token_table[key].shape[0], [acts.shape[0]],
                          "the token table must have one row per activation row")
            )
    if top_n < 1:
        raise ConfigError(bad_value("top_n", top_n, "an integer >= 1"))
    bad = [j for j in latents if not 0 <= int(j) < cc.n_latents]
    if bad:
        raise ConfigError(bad_value("latents", bad, f"indices in 0..{cc.n_latents - 1}"))
    batches = (acts[s : s + batch_size] for s in range(0, acts.shape[0], batch_size))
    values, rows = top_activations(cc, batches, latents, top_n=top_n)
    tok = token_table["token_ids"].long()
    seq = token_table["seq_index"].long()
    pos = token_table["pos_index"].long()
    lookup: dict[tuple[int, int], int] = {}
    needed = {int(seq[r]) for r in rows.flatten().tolist() if r >= 0}
    for i in torch.nonzero(torch.isin(seq, torch.tensor(sorted(needed), dtype=torch.long))).flatten().tolist():
        lookup[(int(seq[i]), int(pos[i]))] = int(tok[i])
    out: dict[str, Any] = {}
    for jpos, latent in enumerate(latents):
        contexts = []
        for v, r in zip(values[jpos].tolist(), rows[jpos].tolist(), strict=True):
            if r < 0:
                continue
            s, p = int(seq[r]), int(pos[r])
            window = [(q, lookup[(s, q)]) for q in range(p - before, p + after + 1) if (s, q) in lookup]
            ids = [t for _, t in window]
            index = [q for q, _ in window].index(p)
            strings = _token_strings(tokenizer, ids)
            text = "".join(strings[:index]) + "[[" + strings[index] + "]]" + "".join(strings[index + 1:])
            markup = (html.escape("".join(strings[:index])) + "<mark>" + html.escape(strings[index]) + "</mark>"
                      + html.escape("".join(strings[index + 1:])))
            contexts.append({"activation": float(v), "seq": s, "pos": p, "tokens": strings, "index": index,
                             "text": text, "html": markup})
        out[str(int(latent))] = contexts
    return out
