"""Batched per-sample gradient activation scoring.

For every scored linear weight W (inside the decoder blocks), a forward hook keeps the
layer input X_b and a tensor hook on the layer output receives δ_b = ∂D_b/∂output.
Because D_b depends on sample b alone, one backward pass of Σ_b D_b yields every δ_b,
and the per-sample weight gradient is G_b = δ_bᵀ X_b (one batched matmul, Opacus-style).
A_b = |G_b ⊙ W| is reduced inside the hook and discarded: the weights' own ``.grad``
is never materialised (weights do not even require grad).

Reductions made in the same pass (all optional):
  * per group (domain), Σ_b A_b for every weight -> the mean activation per weight;
  * per sample and matrix: Σ A, Σ A², #{A > γ} for each threshold γ;
  * per layer, the exact Gram matrix Σ_w A_b(w)·A_c(w) over all pairs in the batch,
    so LLMDcos(b, c) = Gram[b,c] / sqrt(Gram[b,b]·Gram[c,c]) for every pair at once;
  * optionally the mean-pooled last hidden state per sample (a baseline for Validation 3).

Padding cannot leak: right padding + attention mask, D read at each sample's last real
token, so δ is exactly zero at padded positions.
A sample whose D or gradient is not finite is excluded and reported, and its
batch is re-run without it, so nothing non-finite ever reaches the sums.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..modelio import ModelError, ScoredWeight, find_blocks, scored_weights
from . import elementwise, fused, wgmma
from . import targets as tgt

log = logging.getLogger(__name__)

_HALF_BMM_FP32_OUT = [True]  # torch.bmm(..., out_dtype=float32) for bf16/fp16 on CUDA, where available


def _phase(name: str):
    """A named span of a pass for torch.profiler (benchmarks/profile_scoring.py); ~1 µs when not profiling."""
    return torch.profiler.record_function(f"actpat.{name}")


@dataclass
class ScoreOptions:
    target: str = "max_logit"
    max_tokens: int = 256
    thresholds: tuple[float, ...] = ()
    sums: bool = True  # per-group Σ A per weight
    stats: bool = True  # per-sample-per-matrix Σ A, Σ A², counts
    gram: bool = True  # per-layer Gram matrix of each batch
    hidden: bool = False  # mean-pooled last hidden state per sample
    include: str | None = None
    exclude: str | None = None
    # GPU half precision: fused (one Triton kernel, G in registers), wgmma (the same on Hopper GPUs, with
    # explicit async tensor-core products), split (library GEMM for G, then one Triton pass with the Gram in
    # registers), unfused (PyTorch ops); auto: wgmma on Hopper GPUs, else fused
    kernel: str = "auto"
    # the blocks' RMSNorm, rotary embedding and SwiGLU: compiled (torch.compile: fused forward and backward
    # kernels), eager, or auto (compiled on CUDA for runs long enough to win the compile time back); see
    # elementwise.py
    elementwise: str = "auto"
    # per-sample A kept at this many seeded random weights per block (the bootstrap of Finding 1 resamples
    # samples over them; the sums above only hold the mean), split over the block's matrices by size
    probe_per_layer: int = 0
    probe_seed: int = 0
    # inputs longer than max_tokens: "left" keeps their end (task prompts: D is read at "Answer:"), "right"
    # keeps their start (plain-text windows, whose last token is arbitrary anyway)
    truncation: str = "right"

    def __post_init__(self):
        self.thresholds = tuple(self.thresholds)  # a YAML list from the config reads as the same options


@dataclass
class ScoreResult:
    """Everything one scoring run produced (CPU tensors / numpy)."""

    weights: list[ScoredWeight]
    n_layers: int
    thresholds: tuple[float, ...]
    sums: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # group -> weight name -> Σ A
    n_samples: dict[str, int] = field(default_factory=dict)  # group -> included samples
    sample_ids: list[str] = field(default_factory=list)  # included samples, in scoring order
    sample_groups: list[str] = field(default_factory=list)
    s1: list[np.ndarray] = field(default_factory=list)  # per sample: [n_matrices] Σ A
    s2: list[np.ndarray] = field(default_factory=list)  # per sample: [n_matrices] Σ A²
    counts: list[np.ndarray] = field(default_factory=list)  # per sample: [n_matrices, n_thresholds]
    pairs: list[tuple] = field(default_factory=list)  # (layer, id_a, group_a, id_b, group_b, dot, n2a, n2b)
    hidden: dict[str, np.ndarray] = field(default_factory=dict)
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)
    truncated: list[str] = field(default_factory=list)
    tokens_cut: dict[str, int] = field(default_factory=dict)  # truncated sample -> tokens removed
    probes: list[np.ndarray] = field(default_factory=list)  # per sample: [Σ k_m] A at the probe weights
    probe_index: dict[int, np.ndarray] = field(default_factory=dict)  # matrix -> flat indices of its probes
    seconds: float = 0.0
    passes: int = 0  # samples pushed through forward+backward (re-runs included)


def _to_cpu(d: dict, dtype: torch.dtype) -> dict:
    """Copy a dict of same-shaped tensors to the CPU with one transfer per device, not one per entry
    (each transfer waits for the GPU and costs a round trip)."""
    out, by_dev = {}, {}
    for k, v in d.items():
        by_dev.setdefault(v.device, []).append(k)
    for keys in by_dev.values():
        out.update(zip(keys, torch.stack([d[k].to(dtype) for k in keys]).cpu()))
    return out


class _BatchState:
    """Per-pass accumulators; per-matrix results stay on their device until the pass ends."""

    def __init__(self, B, n_layers, groups, positions, want_sums, running=None):
        self.B = B
        self.n_layers = n_layers
        self.positions = positions
        self.group_rows = groups  # group -> LongTensor of batch rows
        self.s1: dict[int, torch.Tensor] = {}  # matrix -> [B] Σ A
        self.s2: dict[int, torch.Tensor] = {}  # matrix -> [B] Σ A²
        self.cnt: dict[int, torch.Tensor] = {}  # matrix -> [B, n_thresholds]
        self.gram: dict[int, torch.Tensor] = {}  # layer -> [B, B] Σ A_b A_c (float64)
        self.probe: dict[int, torch.Tensor] = {}  # matrix -> [B, k] A at its probe weights
        self.bad = torch.zeros(B, dtype=torch.bool)
        self.bad_where: dict[int, str] = {}
        self.pending: dict[str, dict[int, torch.Tensor]] = {g: {} for g in groups} if want_sums else {}
        # group -> weight name -> running sum of the committed batches: the kernels add it in their
        # store (one pass less over every weight); those matrices' pending sums then replace it
        self.running: dict[str, dict[str, torch.Tensor]] = running or {}
        self.replaces: set[int] = set()

    def gather(self, n_mats: int, n_thr: int, names: list[str]):
        """Move the pass's per-sample results to the CPU (one sync) and flag non-finite samples."""
        s1, s2 = _to_cpu(self.s1, torch.float64), _to_cpu(self.s2, torch.float64)
        cnt, gram = _to_cpu(self.cnt, torch.int64), _to_cpu(self.gram, torch.float64)
        S1 = torch.zeros(self.B, n_mats, dtype=torch.float64)
        S2 = torch.zeros(self.B, n_mats, dtype=torch.float64)
        C = torch.zeros(self.B, n_mats, max(n_thr, 1), dtype=torch.int64)
        for k, v in s1.items():
            S1[:, k] = v
            bad = ~torch.isfinite(v)
            for b in bad.nonzero().flatten().tolist():
                self.bad_where.setdefault(b, f"non-finite gradient in {names[k]}")
            self.bad |= bad
        for k, v in s2.items():
            S2[:, k] = v
        for k, v in cnt.items():
            C[:, k, :n_thr] = v
        G = torch.zeros(self.n_layers, self.B, self.B, dtype=torch.float64)
        for layer, v in gram.items():
            G[layer] = v
        P = (torch.cat([self.probe[k].float().cpu() for k in sorted(self.probe)], 1) if self.probe
             else torch.zeros(self.B, 0))
        return S1, S2, C[:, :, :n_thr], G, P


class ActivationScorer:
    """Per-sample activation scoring of one model; reusable across runs."""

    def __init__(self, model, tokenizer, options: ScoreOptions | None = None):
        self.model = model
        self.tok = tokenizer
        self.opts = options or ScoreOptions()
        if self.opts.target not in tgt.TARGETS:
            raise ValueError(f"unknown target {self.opts.target!r}; expected one of {tgt.TARGETS}")
        if self.opts.elementwise not in ("auto", "compiled", "eager"):
            raise ValueError(f"unknown elementwise {self.opts.elementwise!r}; expected auto, compiled or eager")
        if getattr(model.config, "is_encoder_decoder", False):
            raise ModelError(f"{type(model).__name__} is an encoder-decoder; ActPat scores causal LMs")
        self.weights = scored_weights(model, self.opts.include, self.opts.exclude)
        self.n_layers = len(find_blocks(model)[1])
        self.head = model.get_output_embeddings()
        if self.head is None:
            raise ModelError(f"{type(model).__name__} has no output embedding (LM head); not a causal LM")
        self.embed = model.get_input_embeddings()
        dt = next(model.parameters()).dtype
        self.acc_dtype = torch.float64 if dt == torch.float64 else torch.float32
        self.sum_dtype = torch.float64 if dt == torch.float64 else torch.float32
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._state: _BatchState | None = None
        self.probe_index = self._probe_index() if self.opts.probe_per_layer else {}
        self._probe_rc = {k: (torch.as_tensor(idx // w.weight.shape[1], device=w.weight.device),
                              torch.as_tensor(idx % w.weight.shape[1], device=w.weight.device))
                          for k, (w, idx) in ((k, (self.weights[k], i)) for k, i in self.probe_index.items())}

    def _probe_index(self) -> dict[int, np.ndarray]:
        """Seeded flat indices per matrix: ``probe_per_layer`` weights per block, in proportion to matrix size,
        so the probes are a uniform random sample of the block (the same for every job with the same seed)."""
        import zlib

        per_layer: dict[int, int] = {}
        for w in self.weights:
            per_layer[w.layer] = per_layer.get(w.layer, 0) + w.weight.numel()
        out = {}
        for k, w in enumerate(self.weights):
            n = w.weight.numel()
            m = min(n, max(1, round(self.opts.probe_per_layer * n / per_layer[w.layer])))
            rng = np.random.default_rng([self.opts.probe_seed, zlib.crc32(w.name.encode())])
            out[k] = np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64)
        return out

    def _probe(self, k: int, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """A_b(w) = |w · Σ_t δ_b,t[r] x_b,t[c]| at the probe weights of matrix k, for every sample b."""
        sw = self.weights[k]
        r, c = self._probe_rc[k]
        a, b = (x, d) if sw.transposed else (d, x)  # Conv1D stores [in, out]: G = Xᵀ δ
        g = (a.index_select(2, r).to(self.acc_dtype) * b.index_select(2, c).to(self.acc_dtype)).sum(1)
        return (g * sw.weight[r, c].to(self.acc_dtype)).abs()

    # ------------------------------------------------------------------ tokenisation

    def encode(self, text: str, sid: str) -> tuple[list[int], int]:
        """Token ids (at most ``max_tokens``) and how many tokens truncation removed."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"sample {sid!r}: empty text; every sample needs text to score")
        ids = self.tok(text, add_special_tokens=True)["input_ids"]
        n = self.opts.max_tokens
        cut = max(0, len(ids) - n)
        if cut and self.opts.truncation == "left":
            # keep the end, where D is read (a task prompt's final "Answer:"), and the BOS the model expects
            head = ids[:1] if ids[0] == self.tok.bos_token_id else []
            return head + ids[len(ids) - (n - len(head)):], cut
        return ids[:n], cut

    # ------------------------------------------------------------------ hooks

    def _fwd_hook(self, k: int):
        def hook(mod, inp, out):
            st = self._state
            if st is None:
                return
            if not out.requires_grad:
                raise RuntimeError(f"{self.weights[k].name}: output does not require grad; the graph was not built")
            # No masking of x is needed: δ is exactly zero at padded positions (they come after the
            # scored token under a causal mask), which the padding tests check against batch-1.
            x = inp[0]
            out.register_hook(lambda g, x=x: self._reduce(k, x, g))

        return hook

    def _embed_hook(self, mod, inp, out):
        if self._state is not None:
            out.requires_grad_(True)  # weights are frozen: start the graph at the embeddings
        return out

    def _head_prehook(self, mod, args):
        st = self._state
        if st is None or st.positions is None:
            return None
        h = args[0]
        b = torch.arange(h.shape[0], device=h.device)
        pos = st.positions
        # from pinned memory, without waiting: a copy from pageable memory would hold the CPU until the GPU
        # had finished the forward, and the GPU would then idle while the backward was being launched
        pos = pos.pin_memory().to(h.device, non_blocking=True) if h.is_cuda else pos.to(h.device)
        return (h[b, pos].unsqueeze(1), *args[1:])

    def _use_fused(self, sw: ScoredWeight, x: torch.Tensor, st: _BatchState) -> bool:
        if self.opts.kernel == "unfused" or sw.transposed or x.dtype not in (torch.bfloat16, torch.float16):
            return False
        if len(st.pending) > 1:  # per-group sums of a mixed batch: the kernels sum over the whole batch
            return False
        ok = fused.available(x)
        if self.opts.kernel in ("fused", "split") and not ok:
            raise RuntimeError(f"kernel: {self.opts.kernel} needs Triton and a CUDA device; use kernel: auto or "
                               "unfused")
        if self.opts.kernel == "wgmma" and not wgmma.available(x):
            raise RuntimeError("kernel: wgmma needs a Hopper GPU (compute capability 9.x) and Triton with Gluon; "
                               "use kernel: auto")
        return ok

    def _reduce_fused(self, k: int, x: torch.Tensor, d: torch.Tensor) -> None:
        st = self._state
        sw = self.weights[k]
        thr = tuple(self.opts.thresholds)
        # measured on an H200 (benchmarks/NOTES.md): wgmma on Hopper GPUs, which for the Gram also stores A in
        # bf16 (rows of whole 128-row tiles only), else fused; then the Gram of A in one pass.  split (G by a
        # library GEMM, then one pass) only when asked for: slower since the Gram pass got fast
        hopper = self.opts.kernel in ("auto", "wgmma") and wgmma.available(x)
        use_wgmma = hopper and (wgmma.a_fits(sw.weight) if self.opts.gram else wgmma.fits(sw.weight))
        (g,) = st.pending or (None,)  # _use_fused: at most one group per batch
        base = st.running.get(g, {}).get(sw.name)
        if base is not None and (base.dtype != torch.float32 or base.device != x.device):
            base = None
        a16 = gm = None
        if use_wgmma:
            total, s1, s2, cnt, a16 = wgmma.wgmma_reduce(x, d, sw.weight, thr, want_a=self.opts.gram, base=base)
        elif self.opts.kernel == "split":
            total, s1, s2, cnt, gm = fused.split_reduce(x, d, sw.weight, thr, self.opts.gram, base=base)
        else:
            total, s1, s2, cnt, a16 = fused.fused_reduce(x, d, sw.weight, thr, self.opts.gram, base=base)
        if a16 is not None:  # the Gram from A's bf16 copy, in one pass
            gm = fused.gram(a16.view(a16.shape[0], -1))
        st.s1[k] = s1
        st.s2[k] = s2.to(torch.float64)
        if gm is not None:
            st.gram[sw.layer] = st.gram[sw.layer] + gm if sw.layer in st.gram else gm
        if self.opts.thresholds:
            st.cnt[k] = cnt
        for rows in st.pending.values():
            rows[k] = total.to(self.sum_dtype)
        if base is not None:
            st.replaces.add(k)

    def _reduce(self, k: int, x: torch.Tensor, d: torch.Tensor) -> None:
        st = self._state
        sw = self.weights[k]
        # some blocks (OPT's MLP) flatten [B, T, H] to [B*T, H] before a linear: restore the sample axis
        x = x.reshape(st.B, -1, x.shape[-1])
        d = d.reshape(st.B, -1, d.shape[-1])
        if k in self._probe_rc:
            st.probe[k] = self._probe(k, x, d)
        if self._use_fused(sw, x, st):
            return self._reduce_fused(k, x, d)
        W = sw.weight
        if x.is_cuda and x.dtype in (torch.bfloat16, torch.float16) and _HALF_BMM_FP32_OUT[0]:
            # half-precision operands, float32 accumulation and output (no rounding of G to bf16)
            a, b = (x.transpose(1, 2), d) if sw.transposed else (d.transpose(1, 2), x)
            try:
                G = torch.bmm(a, b, out_dtype=torch.float32)
            except (TypeError, RuntimeError, NotImplementedError):  # older torch: upcast instead
                _HALF_BMM_FP32_OUT[0] = False
                G = torch.bmm(a.float(), b.float())
        else:
            xs, ds = x.to(self.acc_dtype), d.to(self.acc_dtype)
            # G_b = δ_bᵀ X_b for nn.Linear ([out, in]); X_bᵀ δ_b for GPT-2's Conv1D ([in, out])
            G = torch.bmm(xs.transpose(1, 2), ds) if sw.transposed else torch.bmm(ds.transpose(1, 2), xs)
        A = G.mul_(W).abs_()
        B = A.shape[0]
        flat = A.view(B, -1)
        # float32 reductions are accurate to ~1e-7 here; converting A to float64 would cost more than the rest
        st.s1[k] = flat.sum(1)
        if self.opts.gram or self.opts.stats:
            gm = (flat @ flat.T).to(torch.float64)
            st.s2[k] = gm.diagonal()
            if self.opts.gram:
                st.gram[sw.layer] = st.gram[sw.layer] + gm if sw.layer in st.gram else gm
        if self.opts.thresholds:
            st.cnt[k] = torch.stack([(flat > t).sum(1) for t in self.opts.thresholds], 1)
        for g, rows in st.pending.items():
            r = st.group_rows[g]
            rows[k] = (A.sum(0) if len(r) == B else A.index_select(0, r.to(A.device)).sum(0)).to(self.sum_dtype)

    # ------------------------------------------------------------------ running

    def run(self, texts: list[str], ids: list[str], groups: list[str] | None = None,
            batches: list[list[int]] | None = None, batch_size: int = 8, progress: bool = True,
            desc: str = "scoring") -> ScoreResult:
        """Score samples ``texts`` (ids ``ids``, group labels ``groups``) in ``batches``.

        ``batches`` are lists of indices into ``texts``; pairs sharing a batch get exact
        LLMDcos.  Default: batches of ``batch_size`` samples of similar token length.
        """
        n = len(texts)
        if len(ids) != n or (groups is not None and len(groups) != n):
            raise ValueError("texts, ids and groups must have the same length")
        if len(set(ids)) != n:
            dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise ValueError(f"duplicate sample ids {dup}: ids must be unique")
        groups = list(groups) if groups is not None else ["all"] * n
        res = ScoreResult(self.weights, self.n_layers, tuple(self.opts.thresholds), probe_index=self.probe_index)
        if self.opts.sums:
            res.sums = {g: {} for g in dict.fromkeys(groups)}
            res.n_samples = {g: 0 for g in dict.fromkeys(groups)}
        enc = {}
        for i in (range(n) if batches is None else sorted({i for b in batches for i in b})):
            enc[i], cut = self.encode(texts[i], ids[i])
            if cut:
                res.truncated.append(ids[i])
                res.tokens_cut[ids[i]] = cut
        if batches is None:
            # similar lengths share a batch: less padding, which costs as much as real tokens
            order = sorted(range(n), key=lambda i: (len(enc[i]), i))
            batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        if res.truncated:
            log.info("%d of %d samples longer than %d tokens were truncated", len(res.truncated), len(enc),
                     self.opts.max_tokens)
        handles = [self.embed.register_forward_hook(self._embed_hook),
                   self.head.register_forward_pre_hook(self._head_prehook)]
        handles += [w.module.register_forward_hook(self._fwd_hook(k)) for k, w in enumerate(self.weights)]
        ew = self.opts.elementwise
        tokens = sum(len(b) * max(len(enc[i]) for i in b) for b in batches if b)  # padded, as computed
        compiled = ew == "compiled" or (ew == "auto" and self.embed.weight.is_cuda and elementwise.worth_compiling(
            sum(w.weight.numel() for w in self.weights), tokens))
        t0 = time.time()
        try:
            with (elementwise.compiled_blocks(self.model) if compiled else contextlib.nullcontext()) as done, \
                    tqdm(total=sum(len(b) for b in batches), desc=desc, unit="sample", disable=not progress) as bar:
                if done:
                    log.info("compiled element-wise parts of the blocks: %s", done)
                for batch in batches:
                    self._run_batch(list(batch), texts, ids, groups, enc, res)
                    bar.update(len(batch))
        finally:
            for h in handles:
                h.remove()
            self._state = None
        res.seconds = time.time() - t0
        done = len(res.sample_ids)
        log.info("%s: %d samples (%d excluded) in %.1f s, %.2f samples/s", desc, done, len(res.excluded),
                 res.seconds, res.passes / max(res.seconds, 1e-9))
        return res

    def _run_batch(self, idx, texts, ids, groups, enc, res) -> None:
        need = tgt.min_tokens(self.opts.target)
        for i in list(idx):
            if len(enc[i]) < need:
                res.excluded.append((ids[i], f"{len(enc[i])} token(s): too short for target {self.opts.target}"))
                idx.remove(i)
        while idx:
            st, hidden = self._pass(idx, enc, groups, res.sums)
            res.passes += len(idx)
            if st.bad.any():
                bad = st.bad.nonzero().flatten().tolist()
                for b in bad:
                    reason = st.bad_where.get(b, "non-finite value")
                    res.excluded.append((ids[idx[b]], reason))
                    log.warning("sample %s excluded: %s", ids[idx[b]], reason)
                idx = [i for j, i in enumerate(idx) if j not in set(bad)]
                continue
            with _phase("commit"):
                self._commit(st, idx, ids, groups, res, hidden)
            return

    def _pass(self, idx, enc, groups, running=None):
        B = len(idx)
        lengths = torch.tensor([len(enc[i]) for i in idx])
        T = int(lengths.max())
        dev = self.embed.weight.device
        input_ids = torch.full((B, T), self.pad_id, dtype=torch.long)
        for r, i in enumerate(idx):
            input_ids[r, : len(enc[i])] = torch.tensor(enc[i])
        mask = torch.arange(T)[None, :] < lengths[:, None]
        gnames = dict.fromkeys(groups[i] for i in idx)
        grows = {g: torch.tensor([r for r, i in enumerate(idx) if groups[i] == g]) for g in gnames}
        st = _BatchState(B, self.n_layers, grows, tgt.positions(self.opts.target, lengths), self.opts.sums, running)
        self._state = st
        hidden = None
        try:
            with torch.enable_grad():
                with _phase("forward"):
                    out = self.model(input_ids=input_ids.to(dev), attention_mask=mask.long().to(dev),
                                     use_cache=False, output_hidden_states=self.opts.hidden)
                D = tgt.value(self.opts.target, out.logits, input_ids, lengths)
                # checked after the backward: reading it here would stop the CPU until the GPU caught up, and
                # the GPU would then idle while the backward was being launched.  A non-finite D_b only
                # spoils its own sample's gradients, and the batch is re-run without it.
                finite = torch.isfinite(D)
                if self.opts.hidden:
                    h = out.hidden_states[-1].detach().to(torch.float64)
                    m = mask.to(h.device, h.dtype).unsqueeze(-1)
                    hidden = (h * m).sum(1) / m.sum(1)
                del out
                with _phase("backward"):
                    D.sum().backward()
            finite = finite.cpu()
            if not finite.all():
                for b in (~finite).nonzero().flatten().tolist():
                    st.bad_where[b] = f"non-finite D ({self.opts.target}) in the forward pass"
                st.bad |= ~finite
                return st, None
            with _phase("gather"):
                st.stats = st.gather(len(self.weights), len(self.opts.thresholds), [w.name for w in self.weights])
            if hidden is not None:
                hidden = hidden.cpu().numpy()
        finally:
            self._state = None
        return st, hidden

    def _commit(self, st: _BatchState, idx, ids, groups, res: ScoreResult, hidden) -> None:
        for g, rows in st.pending.items():
            acc = res.sums.setdefault(g, {})
            for k, part in rows.items():
                name = self.weights[k].name
                if k in st.replaces:  # the kernel already added the running sum
                    acc[name] = part
                elif name in acc:
                    acc[name] += part
                else:  # a fresh tensor of this pass: no copy
                    acc[name] = part
            res.n_samples[g] = res.n_samples.get(g, 0) + len(st.group_rows[g])
        S1, S2, C, G, P = st.stats
        for r, i in enumerate(idx):
            if self.probe_index:
                res.probes.append(P[r].numpy())
            res.sample_ids.append(ids[i])
            res.sample_groups.append(groups[i])
            res.s1.append(S1[r].numpy())
            res.s2.append(S2[r].numpy())
            res.counts.append(C[r].numpy())
            if hidden is not None:
                res.hidden[ids[i]] = hidden[r]
        if self.opts.gram:  # Python floats from NumPy rows: indexing the tensor per pair cost ~50 ms a batch
            Gn = G.numpy()
            norms = [Gn[:, a, a].tolist() for a in range(len(idx))]  # [sample][layer]
            for a in range(len(idx)):
                for b in range(a + 1, len(idx)):
                    dots = Gn[:, a, b].tolist()
                    res.pairs.extend((layer, ids[idx[a]], groups[idx[a]], ids[idx[b]], groups[idx[b]], dots[layer],
                                      norms[a][layer], norms[b][layer]) for layer in range(self.n_layers))
