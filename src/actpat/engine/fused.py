"""Per-sample activation kernels (Triton; CUDA, or the Triton interpreter for tests).

The un-fused path materialises every per-sample gradient G_b = δ_bᵀ X_b in float32 and then
makes about eight passes over it (multiply by W, abs, sums, counts, Gram): memory traffic,
not arithmetic, dominates.  Two kernels avoid that (timings: benchmarks/NOTES.md).

``fused_reduce`` forms each G_b tile with ``tl.dot`` in registers from δ and X, multiplies by
the W tile, takes |.|, and reduces in the same registers; G never exists in memory:

  * Σ_b A_b                 -> written once per tile (the batch's contribution to the sums)
  * Σ A, Σ A², #{A > γ_j}   -> per (sample, tile, row) partials, summed afterwards (deterministic:
                               no atomics, so results do not depend on scheduling)
  * optionally A_b in bf16  -> for the Gram matrix, which needs every sample's tile at once:
                               ``gram`` pairs all rows of A in one pass, reading it once

``split_reduce`` forms G with one library GEMM (rounded once to bf16) and reduces it in one
pass that holds all samples of a weight block at once, so it also pairs them for the Gram
matrix in registers (slower than ``fused_reduce`` + ``gram`` since ``gram`` is one pass).

``wgmma.py`` has ``fused_reduce`` for Hopper GPUs, with the tensor-core products scheduled by
hand.  Only nn.Linear weights ([out, in]) with half-precision operands take these paths;
everything else uses the un-fused reference path in ``scorer.py``.
"""

from __future__ import annotations

import os

import torch

try:  # Triton is optional: CPU installs do not have it
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except ImportError:  # pragma: no cover - exercised where triton is missing
    HAVE_TRITON = False

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def available(x: torch.Tensor) -> bool:
    """Can the fused kernel run on this tensor's device?"""
    return HAVE_TRITON and (x.is_cuda or INTERPRET)


_THRESHOLDS: dict[tuple, torch.Tensor] = {}


def thresholds_on(thresholds: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """The thresholds as a float32 device tensor, made once per device: a fresh copy from pageable host
    memory per matrix would synchronise the CPU with the GPU each time (GPU idle ~15% of a 7B pass)."""
    key = (tuple(thresholds), str(device))
    if key not in _THRESHOLDS:
        _THRESHOLDS[key] = torch.tensor(list(thresholds) or [0.0], dtype=torch.float32, device=device)
    return _THRESHOLDS[key]


if HAVE_TRITON:

    @triton.jit
    def _fused_act(D, X, W, SUM, BASE, P1, P2, PC, A16, THR, B: tl.constexpr, T, O, I,
                   sdb, sdt, sdo, sxb, sxt, sxi,
                   NTHR: tl.constexpr, WRITE_A: tl.constexpr, W_HALF: tl.constexpr, HAS_BASE: tl.constexpr,
                   FLAT: tl.constexpr, GROUP: tl.constexpr,
                   BO: tl.constexpr, BI: tl.constexpr, BT: tl.constexpr):
        tile = tl.program_id(0)
        n_o = tl.cdiv(O, BO)
        n_i = tl.cdiv(I, BI)
        if GROUP > 0:  # programs running together cover GROUP row tiles: their δ and X tiles stay in L2
            per_group = GROUP * n_i
            first_o = (tile // per_group) * GROUP
            size = tl.minimum(n_o - first_o, GROUP)
            pid_o = first_o + (tile % per_group) % size
            pid_i = (tile % per_group) // size
        else:
            pid_o = tile % n_o
            pid_i = tile // n_o
        ro = pid_o * BO + tl.arange(0, BO)
        ri = pid_i * BI + tl.arange(0, BI)
        mo = ro < O
        mi = ri < I
        m2 = mo[:, None] & mi[None, :]
        w = tl.load(W + ro[:, None] * I + ri[None, :], mask=m2, other=0.0)
        if W_HALF:  # keep |W| in half precision: fewer registers per program (|g·w| = |g|·|w|)
            w = tl.abs(w)
        else:
            w = w.to(tl.float32)
        s_acc = tl.zeros((BO, BI), dtype=tl.float32)
        rt = tl.arange(0, BT)
        for b in tl.range(0, B, flatten=FLAT):  # flattened: the next sample's loads overlap this epilogue
            g = tl.zeros((BO, BI), dtype=tl.float32)
            for t0 in range(0, T, BT):
                tt = t0 + rt
                mt = tt < T
                d = tl.load(D + b * sdb + tt[:, None] * sdt + ro[None, :] * sdo, mask=mt[:, None] & mo[None, :],
                            other=0.0)
                x = tl.load(X + b * sxb + tt[:, None] * sxt + ri[None, :] * sxi, mask=mt[:, None] & mi[None, :],
                            other=0.0)
                g = tl.dot(tl.trans(d), x, g)
            if W_HALF:
                a = tl.abs(g) * w.to(tl.float32)
            else:
                a = tl.abs(g * w)  # masked lanes have w = 0, so they add nothing below
            s_acc += a
            # per-row partials: reduced within each warp, no cross-warp barrier per sample
            rb = (b * n_o * n_i + tile) * BO + tl.arange(0, BO)  # [B, tiles·BO]: each sample's contiguous
            tl.store(P1 + rb, tl.sum(a, axis=1))
            tl.store(P2 + rb, tl.sum(a * a, axis=1))
            for j in tl.static_range(NTHR):
                thr = tl.load(THR + j)
                tl.store(PC + j * B * n_o * n_i * BO + rb, tl.sum((a > thr).to(tl.int32), axis=1))
            if WRITE_A:
                tl.store(A16 + b * O * I + ro[:, None] * I + ri[None, :], a.to(tl.bfloat16), mask=m2)
        if HAS_BASE:  # the running sum of earlier batches, added here instead of in a separate pass
            s_acc += tl.load(BASE + ro[:, None] * I + ri[None, :], mask=m2, other=0.0)
        tl.store(SUM + ro[:, None] * I + ri[None, :], s_acc, mask=m2)


def fused_reduce(x: torch.Tensor, d: torch.Tensor, W: torch.Tensor, thresholds: tuple[float, ...],
                 want_a: bool, block: tuple[int, int, int] = (128, 128, 64), num_warps: int = 8,
                 num_stages: int = 4, w_half: bool = False, flatten: bool = True, group: int = 8,
                 base: torch.Tensor | None = None):
    """Reductions of A_b = |δ_bᵀ X_b ⊙ W| for one nn.Linear without materialising G.

    Returns (base + sum_b A_b [O, I] float32, s1 [B], s2 [B], counts [B, n_thr], A_bf16 [B, O, I] or
    None); ``base`` (float32 [O, I], optional: the running sum of earlier batches) is read, never written.
    """
    B, T, I = x.shape
    O = W.shape[0]
    assert d.shape == (B, T, O) and W.shape == (O, I), (x.shape, d.shape, W.shape)
    x = x.contiguous()
    d = d.contiguous()
    W = W.contiguous()
    BO, BI, BT = block
    n_tiles = triton.cdiv(O, BO) * triton.cdiv(I, BI)
    grid = (n_tiles,)
    dev = x.device
    out_sum = torch.empty(O, I, dtype=torch.float32, device=dev)
    p1 = torch.empty(B, n_tiles * BO, dtype=torch.float32, device=dev)
    p2 = torch.empty(B, n_tiles * BO, dtype=torch.float32, device=dev)
    nthr = len(thresholds)
    pc = torch.empty(max(nthr, 1), B, n_tiles * BO, dtype=torch.int32, device=dev)
    thr = thresholds_on(thresholds, dev)
    a16 = torch.empty(B, O, I, dtype=torch.bfloat16, device=dev) if want_a else torch.empty(1, dtype=torch.bfloat16,
                                                                                            device=dev)
    kw = {} if INTERPRET else {"num_warps": num_warps, "num_stages": num_stages}
    _fused_act[grid](d, x, W, out_sum, out_sum if base is None else base, p1, p2, pc, a16, thr, B, T, O, I,
                     d.stride(0), d.stride(1), d.stride(2), x.stride(0), x.stride(1), x.stride(2),
                     NTHR=nthr, WRITE_A=want_a, W_HALF=w_half and W.dtype != torch.float32, HAS_BASE=base is not None,
                     FLAT=flatten, GROUP=group, BO=BO, BI=BI, BT=BT, **kw)
    counts = pc.sum(2, dtype=torch.int64).T[:, :nthr]
    return out_sum, p1.sum(1), p2.sum(1), counts, (a16 if want_a else None)


if HAVE_TRITON:

    @triton.jit
    def _reduce_g(G, W, SUM, BASE, P1, P2, PC, GR, THR, B, N, NTHR: tl.constexpr, GRAM: tl.constexpr,
                  GRAM_BF16: tl.constexpr, HAS_BASE: tl.constexpr, BP: tl.constexpr, BLOCK: tl.constexpr,
                  ITERS: tl.constexpr):
        """One pass over G [B, N] (half precision) and W [N]: every reduction of A = |G ⊙ W|.

        Each program walks ITERS blocks of BLOCK weights with all samples at once.  The per-sample
        partials stay element-wise in registers and are reduced across threads once at the end;
        the threshold counts share one int32 lane (8 bits per threshold, ITERS <= 255).
        """
        pid = tl.program_id(0)
        rb = tl.arange(0, BP)
        mb = rb < B
        acc1 = tl.zeros((BP, BLOCK), dtype=tl.float32)
        acc2 = tl.zeros((BP, BLOCK), dtype=tl.float32)
        cnt = tl.zeros((BP, BLOCK), dtype=tl.int32)
        gr = tl.zeros((BP, BP), dtype=tl.float32)
        for it in range(ITERS):
            rn = (pid * ITERS + it) * BLOCK + tl.arange(0, BLOCK)
            mn = rn < N
            w = tl.load(W + rn, mask=mn, other=0.0).to(tl.float32)
            g = tl.load(G + rb[:, None] * N + rn[None, :], mask=mb[:, None] & mn[None, :], other=0.0)
            a = tl.abs(g.to(tl.float32) * w[None, :])  # masked samples and weights are 0
            if HAS_BASE:
                tl.store(SUM + rn, tl.sum(a, axis=0) + tl.load(BASE + rn, mask=mn, other=0.0), mask=mn)
            else:
                tl.store(SUM + rn, tl.sum(a, axis=0), mask=mn)
            acc1 += a
            acc2 += a * a
            for j in tl.static_range(NTHR):
                cnt += (a > tl.load(THR + j)).to(tl.int32) << (8 * j)
            if GRAM:  # every pair of samples of this block at once, on the tensor cores (bf16 in, fp32 out)
                if GRAM_BF16:
                    ah = a.to(tl.bfloat16)
                    gr = tl.dot(ah, tl.trans(ah), gr)
                else:  # the interpreter (NumPy has no bfloat16)
                    gr = tl.dot(a, tl.trans(a), gr)
        tl.store(P1 + pid * BP + rb, tl.sum(acc1, axis=1))
        tl.store(P2 + pid * BP + rb, tl.sum(acc2, axis=1))
        for j in tl.static_range(NTHR):
            tl.store(PC + (pid * BP + rb) * NTHR + j, tl.sum((cnt >> (8 * j)) & 255, axis=1))
        if GRAM:
            tl.store(GR + pid * BP * BP + rb[:, None] * BP + rb[None, :], gr)


def split_reduce(x: torch.Tensor, d: torch.Tensor, W: torch.Tensor, thresholds: tuple[float, ...],
                 want_gram: bool, block: int = 32, iters: int = 128, num_warps: int = 1, num_stages: int = 2,
                 base: torch.Tensor | None = None):
    """The same reductions as ``fused_reduce`` in two stages, with the Gram matrix in registers.

    Stage 1 forms every per-sample gradient G_b = δ_bᵀ X_b with one batched library GEMM in the
    operands' precision (float32 accumulation, rounded once to bf16/fp16 as autograd's own weight
    gradients are); stage 2 reads G once and reduces it, pairing all samples of each weight block
    on the tensor cores, so A never makes the round trip through memory that ``gram`` needs.

    Returns (base + sum_b A_b [O, I] float32, s1 [B], s2 [B], counts [B, n_thr], Gram [B, B] float64 or
    None), with ``base`` as in ``fused_reduce``.
    """
    B, T, I = x.shape
    O = W.shape[0]
    assert d.shape == (B, T, O) and W.shape == (O, I), (x.shape, d.shape, W.shape)
    if len(thresholds) > 4 or iters > 255:  # counts are packed 8 bits per threshold in one int32
        raise ValueError("kernel: split counts at most 4 thresholds; use kernel: fused or auto")
    G = torch.bmm(d.transpose(1, 2), x)  # [B, O, I]
    N = O * I
    BP = max(16, triton.next_power_of_2(B))
    n_prog = triton.cdiv(N, block * iters)
    dev = x.device
    nthr = len(thresholds)
    out_sum = torch.empty(O, I, dtype=torch.float32, device=dev)
    p1 = torch.empty(n_prog, BP, dtype=torch.float32, device=dev)
    p2 = torch.empty(n_prog, BP, dtype=torch.float32, device=dev)
    pc = torch.empty(n_prog, BP, max(nthr, 1), dtype=torch.int32, device=dev)
    gr = torch.empty(n_prog if want_gram else 1, BP, BP, dtype=torch.float32, device=dev)
    thr = thresholds_on(thresholds, dev)
    kw = {} if INTERPRET else {"num_warps": num_warps, "num_stages": num_stages}
    _reduce_g[(n_prog,)](G, W.contiguous(), out_sum, out_sum if base is None else base, p1, p2, pc, gr, thr, B, N,
                         NTHR=nthr, GRAM=want_gram, GRAM_BF16=not INTERPRET, HAS_BASE=base is not None, BP=BP,
                         BLOCK=block, ITERS=iters, **kw)
    counts = pc[:, :B].sum(0, dtype=torch.int64)[:, :nthr]
    g = gr.sum(0, dtype=torch.float64)[:B, :B] if want_gram else None
    return out_sum, p1[:, :B].sum(0), p2[:, :B].sum(0), counts, g


if HAVE_TRITON:

    @triton.jit
    def _gram_rows(A, OUT, B, N, BP: tl.constexpr, BLOCK: tl.constexpr, ITERS: tl.constexpr, LOWP: tl.constexpr):
        """Partial Gram matrices of the rows of A [B, N]: each program pairs all rows over ITERS·BLOCK columns,
        loading each element once (a GEMM of A by Aᵀ would read A twice)."""
        pid = tl.program_id(0)
        rb = tl.arange(0, BP)
        row = rb.to(tl.int64) * N  # B·N passes 2^31 on the largest models
        mb = rb < B
        acc = tl.zeros((BP, BP), dtype=tl.float32)
        for it in range(ITERS):
            rn = (pid * ITERS + it) * BLOCK + tl.arange(0, BLOCK)
            a = tl.load(A + row[:, None] + rn[None, :], mask=mb[:, None] & (rn < N)[None, :], other=0.0)
            if not LOWP:  # the interpreter (NumPy has no bfloat16): float32
                a = a.to(tl.float32)
            acc = tl.dot(a, tl.trans(a), acc)
        tl.store(OUT + pid * BP * BP + rb[:, None] * BP + rb[None, :], acc)


def gram(flat: torch.Tensor, impl: str = "auto", block: int = 256, iters: int = 64, num_warps: int = 4) -> torch.Tensor:
    """Σ_w A_b(w)·A_c(w) for every pair of rows of ``flat`` [B, N] (bf16), in float64.

    ``impl`` triton (the default on a GPU): one pass of ``_gram_rows``, every element read once, the
    partial matrices summed in float64.  bmm (the CPU): a single [B, N] @ [N, B] product has a tiny
    output and a huge reduction, which GEMM libraries run on few SMs; splitting N into C chunks gives
    a batched product of C independent [B, N/C] @ [N/C, B] tiles that fills the GPU, summed afterwards.
    """
    B, N = flat.shape
    if impl == "triton" or (impl == "auto" and available(flat) and not INTERPRET):
        flat = flat.contiguous()
        BP = max(16, triton.next_power_of_2(B))
        n_prog = triton.cdiv(N, block * iters)
        part = torch.empty(n_prog, BP, BP, dtype=torch.float32, device=flat.device)
        kw = {} if INTERPRET else {"num_warps": num_warps}
        _gram_rows[(n_prog,)](flat, part, B, N, BP=BP, BLOCK=block, ITERS=iters,
                              LOWP=flat.dtype != torch.float32 and not INTERPRET, **kw)
        return part.sum(0, dtype=torch.float64)[:B, :B]
    C = 1
    while N % (2 * C) == 0 and N // (2 * C) >= 8192 and C < 4096:
        C *= 2
    a3 = flat.view(B, C, N // C).transpose(0, 1)  # [C, B, N/C], each matrix row-strided: no copy
    try:
        part = torch.bmm(a3, a3.transpose(1, 2), out_dtype=torch.float32)
    except (TypeError, RuntimeError, NotImplementedError):  # no mixed-precision bmm here: upcast
        part = torch.bmm(a3.float(), a3.transpose(1, 2).float())
    return part.sum(0, dtype=torch.float64)
