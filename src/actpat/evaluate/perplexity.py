"""Perplexity in the SparseGPT / Wanda protocol (anchors.md §3.1).

The text (documents joined with ``"\\n\\n"``) is tokenised once; the token stream is cut into
non-overlapping windows of ``seq_len`` tokens (the tail that does not fill a window is
dropped; no sliding context), at most ``max_windows`` of them, and
PPL = exp(sum of token NLL / number of predicted tokens).

BOS (``bos``):

* ``auto``: when the tokenizer adds a BOS by default, every window starts with BOS followed by
  ``seq_len - 1`` text tokens (Gemma-style models need it: without it their perplexity
  doubles); otherwise (SmolLM2, GPT-2) windows are plain text tokens.
* ``stream``: the Wanda/SparseGPT code path: the text is tokenised once with the tokenizer's
  defaults, so a BOS (if any) sits only at the start of the first window.  Use it to compare
  with published LLaMA numbers (e.g. Llama-2-7B dense 5.12 at 4096 tokens).

Either way each window predicts ``seq_len - 1`` tokens.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..prune.calibration import adds_bos

log = logging.getLogger(__name__)


# Paired comparisons between pruned models resample blocks of this many consecutive predicted tokens
# (a block bootstrap: a few windows are too few units, single tokens are not independent).
BLOCK_TOKENS = 128


class PerplexityError(ValueError):
    pass


def load_text(path: str | Path | None = None, hub: dict | None = None) -> tuple[str, str]:
    """(text, provenance): a held-out text file, or a hub dataset split joined with "\\n\\n"."""
    if hub:
        from datasets import load_dataset

        ds = load_dataset(hub["path"], hub.get("name"), split=hub.get("split", "test"))
        field = hub.get("text_field", "text")
        if field not in ds.column_names:
            raise PerplexityError(f"dataset {hub['path']} has no column {field!r} (columns: {ds.column_names}); "
                                  "set evaluation.perplexity.hub.text_field")
        return "\n\n".join(ds[field]), f"hub:{hub['path']}/{hub.get('name')}/{hub.get('split', 'test')}"
    p = Path(path)
    if not p.is_file():
        raise PerplexityError(f"held-out text {p} does not exist; it is written by the data rules (heldout_text)")
    text = p.read_text(encoding="utf-8")
    if not text.strip():
        raise PerplexityError(f"held-out text {p} is empty")
    return text, f"file:{p}"


def context_limit(model: nn.Module) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


def make_windows(tokenizer, text: str, seq_len: int, max_windows: int | None = None, bos: str = "auto") -> torch.Tensor:
    """Token windows [n, seq_len] of ``text`` as described in the module docstring."""
    if seq_len < 2:
        raise PerplexityError(f"seq_len {seq_len} must be at least 2")
    if bos == "stream":
        stream, first = tokenizer(text)["input_ids"], []
    elif bos == "auto":
        stream = tokenizer(text, add_special_tokens=False)["input_ids"]
        first = [tokenizer.bos_token_id] if adds_bos(tokenizer) else []
    else:
        raise PerplexityError(f"bos must be 'auto' or 'stream', got {bos!r}")
    body = seq_len - len(first)
    n = len(stream) // body
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise PerplexityError(f"the text has {len(stream)} tokens, fewer than one window of {seq_len}")
    rows = [first + stream[k * body:(k + 1) * body] for k in range(n)]
    return torch.tensor(rows, dtype=torch.long)


@torch.no_grad()
def perplexity(model: nn.Module, windows: torch.Tensor, *, batch_size: int | None = None,
               max_logit_bytes: int = 512 << 20, progress: bool = False) -> dict:
    """Perplexity of ``model`` over ``windows`` [n, T]; also the NLL sum and token count."""
    n, T = windows.shape
    vocab = model.get_output_embeddings().weight.shape[0]
    if batch_size is None:  # keep the float32 logits of one batch under max_logit_bytes
        batch_size = max(1, max_logit_bytes // (T * vocab * 4))
    dev = model.get_input_embeddings().weight.device
    per_window: list[float] = []  # NLL sum of each window
    per_block: list[list[float]] = []  # ... and of each block of BLOCK_TOKENS predicted tokens in it
    count = 0
    for b in tqdm(range(0, n, batch_size), desc="perplexity", disable=not progress):
        x = windows[b:b + batch_size].to(dev)
        logits = model(input_ids=x, use_cache=False).logits[:, :-1].float()
        tok = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none").double()
        tok = tok.view(x.shape[0], -1)
        per_window += tok.sum(1).tolist()
        pad = -tok.shape[1] % BLOCK_TOKENS  # the last block may be shorter: zeros add nothing to its sum
        per_block += torch.nn.functional.pad(tok, (0, pad)).view(tok.shape[0], -1, BLOCK_TOKENS).sum(2).tolist()
        count += x[:, 1:].numel()
    nll = float(sum(per_window))
    mean_nll = nll / count
    # exp overflows beyond ~709 nats per token (a destroyed model): report null rather than inf,
    # which JSON cannot hold; the mean NLL is always there.
    ppl = math.exp(mean_nll) if mean_nll < 700 else None
    if ppl is None:
        log.warning("mean NLL %.1f nats per token: perplexity overflows, reported as null", mean_nll)
    return {"perplexity": ppl, "mean_nll": mean_nll, "nll_sum": nll, "tokens": count, "windows": n, "seq_len": T,
            "window_nll": per_window, "block_tokens": BLOCK_TOKENS, "block_nll": per_block}
