"""The paper's batch-1 computation, kept as an independent reference.

One sample at a time: forward, ``D.backward()`` with the weights requiring grad, then
``|weight.grad * weight|`` (paper.md §2.1, `get_gradient_tensors_by_modules`).  Full
logits, no padding, no hooks: nothing is shared with the batched engine, which is
what makes it a check of that engine.  Also used as the speed baseline.
"""

from __future__ import annotations

import torch

from ..modelio import ScoredWeight


def batch1_activations(model, tok, text: str, weights: list[ScoredWeight], *, target: str = "max_logit",
                       max_tokens: int | None = None) -> dict[str, torch.Tensor]:
    """A(s, w) for every scored weight, as the paper's code computes it."""
    ids = tok(text, add_special_tokens=True)["input_ids"]
    if max_tokens is not None:
        ids = ids[:max_tokens]
    dev = model.get_input_embeddings().weight.device
    x = torch.tensor([ids], device=dev)
    params = [w.weight for w in weights]
    for p in params:
        p.requires_grad_(True)
        p.grad = None
    try:
        with torch.enable_grad():
            logits = model(input_ids=x, use_cache=False).logits[0]
            acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
            logits = logits.to(acc)
            if target == "max_logit":
                D = logits[-1].max()
            elif target == "next_token_logprob":
                D = torch.log_softmax(logits[-2], -1)[ids[-1]]
            elif target == "mean_loss":
                D = torch.nn.functional.cross_entropy(logits[:-1], x[0, 1:].to(logits.device))
            else:
                raise ValueError(target)
            D.backward()
        return {w.name: (w.weight.grad * w.weight).abs().detach().clone() for w in weights}
    finally:
        for p in params:
            p.grad = None
            p.requires_grad_(False)


def layer_vectors(acts: dict[str, torch.Tensor], weights: list[ScoredWeight], n_layers: int) -> list[torch.Tensor]:
    """Concatenate one sample's activations per layer (the paper's LLMDcos vectors)."""
    per = [[] for _ in range(n_layers)]
    for w in weights:
        per[w.layer].append(acts[w.name].flatten())
    return [torch.cat(v) for v in per]


def llmdcos(a: torch.Tensor, b: torch.Tensor) -> float:
    """The paper's LLMDcos: sum|a*b| / (||a|| ||b||), computed in float64."""
    a = a.double()
    b = b.double()
    return float((a * b).abs().sum() / (a.norm() * b.norm()))
