"""The scalar D(s) whose gradient defines a weight's activation.

``max_logit`` is the paper's choice (paper.md §2.1): the largest next-token logit at
the sample's last real token.  Two alternatives are offered as documented deviations:
``next_token_logprob`` (log-probability of the sample's last token given its prefix)
and ``mean_loss`` (mean next-token cross-entropy over the sample).

To avoid a [batch, tokens, vocab] logits tensor, the scorer feeds the LM head only the
positions a target needs (``positions``); ``value`` then turns those logits into D.
"""

from __future__ import annotations

import torch

TARGETS = ("max_logit", "next_token_logprob", "mean_loss")


def positions(target: str, lengths: torch.Tensor) -> torch.Tensor | None:
    """Token positions whose logits the target needs, one per sample (None = all)."""
    if target == "max_logit":
        return lengths - 1
    if target == "next_token_logprob":
        return lengths - 2
    if target == "mean_loss":
        return None
    raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")


def min_tokens(target: str) -> int:
    return 1 if target == "max_logit" else 2


def value(target: str, logits: torch.Tensor, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """D per sample, shape [B], computed in float32 (or float64 for a float64 model)."""
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    logits = logits.to(acc)
    b = torch.arange(logits.shape[0], device=logits.device)
    if target == "max_logit":
        return logits[:, 0, :].max(dim=-1).values
    if target == "next_token_logprob":
        nxt = input_ids[b, (lengths - 1).to(input_ids.device)].to(logits.device)
        return torch.log_softmax(logits[:, 0, :], dim=-1)[b, nxt]
    if target == "mean_loss":
        # mean cross-entropy of predicting tokens 1..n-1 of each sample (padding excluded)
        logp = torch.log_softmax(logits[:, :-1, :], dim=-1)
        tgt = input_ids[:, 1:].to(logits.device)
        nll = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        T = nll.shape[1]
        mask = torch.arange(T, device=logits.device)[None, :] < (lengths.to(logits.device) - 1)[:, None]
        return (nll * mask).sum(1) / mask.sum(1).clamp(min=1)
    raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")
