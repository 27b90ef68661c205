"""Batched forward passes of a causal LM that return only the logits that are needed.

CPU time is the limit of the default workflow, so:

* sequences are sorted by length and batched under a token budget, right-padded with an
  attention mask;
* the LM head runs only on the positions that are read (``logits_to_keep`` with per-row
  positions), not on the whole vocabulary x sequence;
* a prefix shared by many prompts (MMLU's fixed few-shot prefix, a question's context) is run
  once and its key/value cache reused (``Prefix``).  Reuse is exact up to float rounding; it
  is only used when the tokens of the full prompt really start with the prefix's tokens.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn


@dataclass
class Prefix:
    ids: list[int]
    cache: object  # transformers Cache holding the prefix's keys/values (batch 1)
    last_logits: torch.Tensor  # [V] logits after the prefix's last token (float32)

    def expanded(self, batch: int):
        cache = copy.deepcopy(self.cache)
        if batch > 1:
            cache.batch_repeat_interleave(batch)
        return cache


def _device(model: nn.Module) -> torch.device:
    return model.get_input_embeddings().weight.device


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


@torch.no_grad()
def make_prefix(model: nn.Module, ids: Sequence[int], base: Prefix | None = None) -> Prefix:
    """Run ``ids`` (after ``base`` if given) once and keep the cache."""
    if not ids:
        if base is None:
            raise ValueError("empty prefix")
        return base
    dev = _device(model)
    x = torch.tensor([list(ids)], device=dev)
    if base is None:
        out = model(input_ids=x, use_cache=True, logits_to_keep=1)
        full = list(ids)
    else:
        cache = base.expanded(1)
        mask = torch.ones(1, len(base.ids) + len(ids), dtype=torch.long, device=dev)
        out = model(input_ids=x, attention_mask=mask, cache=cache, use_cache=True, logits_to_keep=1)
        full = base.ids + list(ids)
    return Prefix(full, out.cache, out.logits[0, -1].float())


def common_prefix(seqs: Sequence[Sequence[int]], min_len: int = 16) -> list[int]:
    """The longest token prefix shared by all ``seqs``, leaving each at least one token of its own.

    Taken from the token ids, not from tokenising a prefix string: BPE merges across the
    boundary (``"\\n\\n"`` + ``"The"``) would otherwise make the cached tokens differ from the
    prompt's.  Shorter than ``min_len`` tokens is not worth caching: returns [].
    """
    if not seqs:
        return []
    first = list(seqs[0])
    n = min(len(s) for s in seqs) - 1
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return first[:n] if n >= min_len else []


def split_prefix(ids: Sequence[int], prefix: Prefix | None) -> tuple[Prefix | None, list[int]]:
    """(prefix, rest) when ``ids`` starts with the prefix's tokens and goes beyond; else (None, ids)."""
    ids = list(ids)
    if prefix is not None and len(ids) > len(prefix.ids) and ids[: len(prefix.ids)] == prefix.ids:
        return prefix, ids[len(prefix.ids):]
    return None, ids


def token_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped by similar length so that (rows x longest row) stays under ``max_tokens``."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, cur, longest = [], [], 0
    for i in order:
        new_longest = max(longest, lengths[i])
        if cur and new_longest * (len(cur) + 1) > max_tokens:
            batches.append(cur)
            cur, new_longest = [], lengths[i]
        cur.append(i)
        longest = new_longest
    if cur:
        batches.append(cur)
    return batches


@torch.no_grad()
def logits_at(
    model: nn.Module,
    seqs: Sequence[Sequence[int]],
    positions: Sequence[Sequence[int]],
    *,
    pad: int,
    prefix: Prefix | None = None,
) -> list[torch.Tensor]:
    """Logits [len(positions[b]), V] (float32) of each sequence at the given positions.

    ``seqs`` are run as one right-padded batch, after ``prefix``'s cache if given (positions
    count from the start of each sequence, not of the prefix).
    """
    dev = _device(model)
    B = len(seqs)
    T = max(len(s) for s in seqs)
    ids = torch.full((B, T), pad, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(list(s))
        mask[b, : len(s)] = 1
    k = max(len(p) for p in positions)
    keep = torch.tensor([list(p) + [p[-1]] * (k - len(p)) for p in positions], dtype=torch.long)
    kw = {}
    if prefix is not None:
        kw["cache"] = prefix.expanded(B)
        kw["use_cache"] = True
        mask = torch.cat([torch.ones(B, len(prefix.ids), dtype=torch.long), mask], dim=1)
    else:
        kw["use_cache"] = False
    out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), logits_to_keep=keep.to(dev), **kw)
    logits = out.logits.float()
    return [logits[b, : len(positions[b])] for b in range(B)]
