"""Block-by-block pruning with calibration inputs recomputed through the already-pruned blocks.

As in the Wanda / SparseGPT / OWL code: the inputs of the first decoder block are captured
once (a pre-forward hook stops the model there), then for each block in turn

1. the block runs on its current inputs with hooks on its linear layers that accumulate the
   input statistics (Wanda: squared L2 norm per input channel; SparseGPT: X^T X);
2. all of the block's matrices are pruned at that block's sparsity S_i;
3. the *pruned* block runs again and its outputs become the next block's inputs.

The captured call keeps everything the model passed to block 0 besides the hidden states
(attention mask, rotary ``position_embeddings``, position ids): with transformers 5 a decoder
block cannot rebuild them itself, and replaying the model's own values keeps the pruning
pass numerically identical to a normal forward.  Calibration sequences all have the same
length, so no padding is involved.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..modelio import ScoredWeight, find_blocks, scored_weights
from .alphapruning import EPSILON
from .allocation import ALLOCATIONS, AllocationError, Inputs, allocate, fit_to_target, outlier_ratio, pruned_per_row
from .masks import apply_mask, magnitude_mask, nm_mask, rowwise_mask, wanda_scores
from .sparsegpt import sparsegpt_prune

log = logging.getLogger(__name__)

METHODS = ("magnitude", "wanda", "sparsegpt", "activation", "wanda_activation")
# Methods that rank weights by the stored mean activation A(w) = mean |w * dD/dw| (the paper's metric)
ACTIVATION_METHODS = ("activation", "wanda_activation")


class PruneError(RuntimeError):
    pass


def needs_calibration(method: str, allocation: str) -> bool:
    """Magnitude pruning needs no data unless OWL's outlier ratios (Wanda scores) are used."""
    a = ALLOCATIONS.get(allocation)  # an unknown name is refused by allocate, naming the known ones
    return method in ("wanda", "sparsegpt", "wanda_activation") or (a is not None and a.needs_outliers)


# ----------------------------------------------------------------------------- block inputs


@dataclass
class BlockInputs:
    """The current inputs of one decoder block, per calibration batch."""

    hidden: list[torch.Tensor]
    kwargs: list[dict]

    @property
    def n_sequences(self) -> int:
        return sum(h.shape[0] for h in self.hidden)


class _Captured(Exception):
    pass


@torch.no_grad()
def capture_block_inputs(model: nn.Module, input_ids: torch.Tensor, batch_size: int = 8) -> BlockInputs:
    """Run the model up to its first decoder block and keep that block's arguments."""
    if input_ids.dim() != 2:
        raise PruneError(f"calibration ids must be [sequences, tokens], got shape {tuple(input_ids.shape)}")
    _, blocks = find_blocks(model)
    out = BlockInputs([], [])

    def hook(module, args, kwargs):
        kwargs = dict(kwargs)
        hidden = args[0] if args else kwargs.pop("hidden_states")
        out.hidden.append(hidden.detach())
        out.kwargs.append(kwargs)
        raise _Captured

    device = model.get_input_embeddings().weight.device
    handle = blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for b in range(0, input_ids.shape[0], batch_size):
            try:
                model(input_ids=input_ids[b:b + batch_size].to(device), use_cache=False)
            except _Captured:
                continue
            raise PruneError(f"{type(model).__name__}: the first decoder block never ran; cannot capture its inputs")
    finally:
        handle.remove()
    return out


def _call_block(block: nn.Module, hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
    out = block(hidden, **kwargs)
    return out[0] if isinstance(out, (tuple, list)) else out  # transformers < 5 returns tuples


@torch.no_grad()
def run_block(block: nn.Module, inputs: BlockInputs) -> BlockInputs:
    return BlockInputs([_call_block(block, h, kw) for h, kw in zip(inputs.hidden, inputs.kwargs)], inputs.kwargs)


class InputStats:
    """Forward hooks accumulating per-input-channel statistics of a block's linear layers."""

    def __init__(self, weights: Sequence[ScoredWeight], hessian: bool = False):
        self.sq: dict[str, torch.Tensor] = {}
        self.H: dict[str, torch.Tensor] = {}
        self.n_seq: dict[str, int] = defaultdict(int)
        self.hessian = hessian
        self._handles = [w.module.register_forward_hook(self._hook(w.name)) for w in weights]

    def _hook(self, name: str):
        def hook(module, args, output):
            x = args[0].detach()
            self.n_seq[name] += x.shape[0] if x.dim() == 3 else 1
            x = x.reshape(-1, x.shape[-1]).float()
            sq = (x * x).sum(0).double()
            self.sq[name] = sq if name not in self.sq else self.sq[name] + sq
            if self.hessian:
                h = (x.T @ x).double()
                self.H[name] = h if name not in self.H else self.H[name] + h
        return hook

    def col_sq_norm(self, name: str) -> torch.Tensor:
        """Wanda's ``scaler_row``: the squared channel norm averaged over sequences."""
        return self.sq[name] / max(self.n_seq[name], 1)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _effective(w: ScoredWeight) -> torch.Tensor:
    """The weight as [out, in] (GPT-2's Conv1D stores [in, out])."""
    return w.weight.data.T if w.transposed else w.weight.data


def _wanda_block_scores(weights: Sequence[ScoredWeight], stats: InputStats) -> dict[str, torch.Tensor]:
    return {w.name: wanda_scores(_effective(w), stats.col_sq_norm(w.name)) for w in weights}


# ----------------------------------------------------------------------------- driver


@dataclass
class PruneResult:
    masks: dict[str, torch.Tensor]  # parameter name -> bool, True = pruned (CPU)
    layers: list[dict]  # one row per block: layer, target, achieved, n_weights, n_pruned, ...
    target: float
    allocated: float  # size-weighted mean of the per-block targets
    achieved: float  # pruned / total over all pruned matrices
    expected_pruned: int  # what the per-row / per-matrix / per-block counts must add up to
    n_pruned: int
    n_weights: int
    adjusted: bool  # fit_to_target had to clip/shift the rule's sparsities
    extra: dict = field(default_factory=dict)


@torch.no_grad()
def owl_outlier_ratios(model: nn.Module, inputs: BlockInputs, M: float, groups=None,
                       progress: bool = False) -> np.ndarray:
    """OWL's layer outlier distribution from Wanda scores of the dense model (one pass)."""
    from tqdm.auto import tqdm

    _, blocks = find_blocks(model)
    groups = groups or _by_layer(scored_weights(model), len(blocks))
    lod = []
    for i in tqdm(range(len(blocks)), desc="OWL outlier ratios", disable=not progress):
        stats = InputStats(groups[i])
        try:
            inputs = run_block(blocks[i], inputs)  # dense outputs: OWL measures the unpruned model
        finally:
            stats.remove()
        lod.append(outlier_ratio(list(_wanda_block_scores(groups[i], stats).values()), M))
    return np.asarray(lod)


def _activation_of(w: ScoredWeight, mean_activation: Callable[[str], torch.Tensor], W: torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(mean_activation(w.name))
    if tuple(a.shape) != tuple(w.weight.shape):
        raise PruneError(f"mean activation of {w.name!r} has shape {tuple(a.shape)}, the weight "
                         f"{tuple(w.weight.shape)}; the store was scored on another model")
    return (a.T if w.transposed else a).to(W.device)


def _by_layer(weights: Sequence[ScoredWeight], n_layers: int) -> list[list[ScoredWeight]]:
    groups: list[list[ScoredWeight]] = [[] for _ in range(n_layers)]
    for w in weights:
        groups[w.layer].append(w)
    return groups


def activation_scores(mean_activation: torch.Tensor, wanda: torch.Tensor | None = None) -> torch.Tensor:
    """Row-wise pruning score from the mean activation A(w) [out, in].

    Alone (``activation``): A itself, so each row keeps its most activated weights.  With Wanda's
    score (``wanda_activation``): A / rowmean(A) + wanda / rowmean(wanda), each divided by its row
    mean so that neither term wins by scale alone (a row whose mean is 0 contributes 0 for that term).
    """
    a = mean_activation.float()
    if wanda is None:
        return a

    def unit(x):
        m = x.mean(dim=1, keepdim=True)
        return torch.where(m > 0, x / torch.where(m > 0, m, 1.0), 0.0)

    return unit(a) + unit(wanda.float())


def _expected(method: str, shape: tuple[int, int], s: float, blocksize: int, nm=None) -> int:
    rows, cols = shape
    if nm is not None:
        return rows * (cols // nm[1]) * nm[0]
    if method in ("wanda", *ACTIVATION_METHODS):
        return rows * pruned_per_row(cols, s)
    if method == "magnitude":
        return pruned_per_row(rows * cols, s)
    return sum(pruned_per_row(rows * (min(c + blocksize, cols) - c), s) for c in range(0, cols, blocksize))


@torch.no_grad()
def prune_model(
    model: nn.Module,
    *,
    method: str,
    target: float,
    allocation: str = "uniform",
    calibration_ids: torch.Tensor | None = None,
    counts: Sequence[float] | None = None,
    alpha: float = 2.0,
    beta: float = 0.2,
    owl_M: float = 5.0,
    owl_lambda: float = 0.08,
    batch_size: int = 8,
    sparsegpt_blocksize: int = 128,
    sparsegpt_percdamp: float = 0.01,
    on_block_inputs: Callable[[int, BlockInputs], None] | None = None,
    progress: bool = True,
    permutation_seed: int = 0,
    nm: tuple[int, int] | None = None,
    alpha_epsilon: float | None = None,
    alpha_mapping: str = "matrix",
    mean_activation: Callable[[str], torch.Tensor] | None = None,
) -> PruneResult:
    """Prune the linear weights of every decoder block in place; return masks and per-block sparsity.

    ``allocation`` picks each block's sparsity: ``uniform``, ``paper`` (needs ``counts``, the
    per-block number of activated weights N_i), ``owl`` (from the dense model's Wanda scores
    on the calibration data) or one of the paper rule's controls ``depth_ramp``, ``owl_matched``
    and ``permuted`` (``permutation_seed`` shuffles the counts); see ``allocation``.
    ``nm = (N, M)`` prunes N of every M consecutive input weights of each row instead (2:4, 4:8;
    ``target`` must then be N/M, and the allocation uniform: the pattern fixes every row's share).
    ``activation`` and ``wanda_activation`` rank each row by the stored mean activation of a
    weight, ``mean_activation(name)`` (the weight's shape; see ``activation_scores``).
    ``on_block_inputs(i, inputs)`` sees the inputs each block is pruned with (for checks).
    """
    from tqdm.auto import tqdm

    if method not in METHODS:
        raise PruneError(f"unknown pruning method {method!r}; use one of {', '.join(METHODS)}")
    if method in ACTIVATION_METHODS and mean_activation is None:
        raise PruneError(f"method {method!r} needs the mean activations of the calibration domain (a score store)")
    if nm is not None and (allocation != "uniform" or abs(target - nm[0] / nm[1]) > 1e-12):
        raise PruneError(f"N:M {nm[0]}:{nm[1]} fixes the sparsity of every row at {nm[0]}/{nm[1]}: it needs "
                         f"allocation 'uniform' and target {nm[0] / nm[1]:g} (got {allocation!r}, {target:g})")
    _, blocks = find_blocks(model)
    L = len(blocks)
    groups = _by_layer(scored_weights(model), L)
    sizes = np.array([sum(w.weight.numel() for w in g) for g in groups], dtype=np.float64)

    inputs = None
    if needs_calibration(method, allocation):
        if calibration_ids is None:
            raise PruneError(f"method {method!r} with allocation {allocation!r} needs calibration data")
        inputs = capture_block_inputs(model, calibration_ids, batch_size)

    try:
        rule, extra = allocate(allocation, Inputs(
            L, target, None if counts is None else np.asarray(counts), alpha, beta, owl_lambda, permutation_seed,
            outlier_ratios=lambda: owl_outlier_ratios(model, inputs, owl_M, groups, progress),
            matrices=lambda: [(w.name, i, w.weight.numel(), _effective(w)) for i, g in enumerate(groups) for w in g],
            alpha_epsilon=EPSILON.get(method, 0.2) if alpha_epsilon is None else alpha_epsilon,
            alpha_mapping=alpha_mapping))
    except AllocationError as e:
        raise PruneError(str(e)) from None
    per_matrix = extra.pop("matrix_sparsity", None)  # AlphaPruning: one sparsity per matrix
    per_block, adjusted = fit_to_target(rule, target, sizes)
    if per_matrix is not None and adjusted:
        raise PruneError(f"allocation {allocation!r}: its per-block means needed clipping ({rule.tolist()})")
    if adjusted:
        log.warning("allocation %s: sparsities clipped to [0, 1] and the unclipped blocks shifted so the mean "
                    "is %.4f again (rule gave %s)", allocation, target, np.round(rule, 4).tolist())
    extra["rule"] = [float(x) for x in rule]

    masks: dict[str, torch.Tensor] = {}
    rows = []
    expected_total = 0
    for i in tqdm(range(L), desc=f"{method} pruning", disable=not progress):
        s = float(per_block[i])

        def sw(w, s=s):  # this matrix's sparsity
            return s if per_matrix is None else per_matrix[w.name]

        if inputs is not None and on_block_inputs is not None:
            on_block_inputs(i, inputs)
        if method == "activation":
            for w in groups[i]:
                W = _effective(w)
                score = _activation_of(w, mean_activation, W)
                m = rowwise_mask(score, sw(w)) if nm is None else nm_mask(score, *nm)
                apply_mask(W, m)
                masks[w.name] = (m.T if w.transposed else m).contiguous().cpu()
        elif method == "magnitude":
            for w in groups[i]:
                if nm is None:
                    m = magnitude_mask(w.weight.data, sw(w))
                else:  # groups run along each output row's inputs
                    m = nm_mask(_effective(w).abs().float(), *nm)
                    m = (m.T if w.transposed else m).contiguous()
                apply_mask(w.weight.data, m)
                masks[w.name] = m.cpu()
        else:
            stats = InputStats(groups[i], hessian=method == "sparsegpt")
            try:
                for h, kw in zip(inputs.hidden, inputs.kwargs):
                    _call_block(blocks[i], h, kw)
            finally:
                stats.remove()
            for w in groups[i]:
                W = _effective(w)
                if method in ("wanda", "wanda_activation"):
                    score = wanda_scores(W, stats.col_sq_norm(w.name))
                    if method == "wanda_activation":
                        score = activation_scores(_activation_of(w, mean_activation, W), score)
                    m = rowwise_mask(score, sw(w)) if nm is None else nm_mask(score, *nm)
                    apply_mask(W, m)
                else:
                    new, m = sparsegpt_prune(W, stats.H[w.name], sw(w), sparsegpt_blocksize, sparsegpt_percdamp, nm)
                    W.copy_(new)
                masks[w.name] = (m.T if w.transposed else m).contiguous().cpu()
            del stats
        if inputs is not None and (i + 1 < L or on_block_inputs is not None):
            inputs = run_block(blocks[i], inputs)
        n_w = sum(w.weight.numel() for w in groups[i])
        n_p = sum(int(masks[w.name].sum()) for w in groups[i])
        exp = sum(_expected(method, tuple(_effective(w).shape), sw(w), sparsegpt_blocksize, nm) for w in groups[i])
        expected_total += exp
        rows.append({"layer": i, "target": s, "achieved": n_p / n_w, "n_weights": n_w, "n_pruned": n_p,
                     "n_expected": exp})
    if on_block_inputs is not None and inputs is not None:
        on_block_inputs(L, inputs)
    n_weights = int(sizes.sum())
    n_pruned = sum(r["n_pruned"] for r in rows)
    if per_matrix is not None:
        extra["matrix_sparsity"] = per_matrix
    return PruneResult(
        masks=masks, layers=rows, target=float(target),
        allocated=float((per_block * sizes).sum() / sizes.sum()),
        achieved=n_pruned / n_weights, expected_pruned=expected_total, n_pruned=n_pruned,
        n_weights=n_weights, adjusted=adjusted, extra=extra,
    )
