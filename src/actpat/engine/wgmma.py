"""Hopper (sm_90) kernel for the per-sample activation reductions: explicit async wgmma.

``fused.fused_reduce`` leaves the scheduling to Triton, which waits for each sample's last
tensor-core product before its epilogue (|G_b ⊙ W|, Σ_b, per-row Σ A, Σ A², counts) and only
then starts the next sample: the tensor cores idle for every epilogue (benchmarks/NOTES.md).
This kernel, written in Gluon (Triton's explicit-layout dialect), keeps two accumulators: the
products of sample b are issued asynchronously, and the epilogue of sample b-1 runs on the CUDA
cores while they are in flight.  δ, X and W tiles arrive by TMA into a ring of shared-memory
stages, so the loads of later samples are also in flight during the epilogue.

Same outputs as ``fused.fused_reduce``; the bf16 copy of A for the Gram leaves through an
asynchronous TMA store (so only for weights whose rows are whole tiles).  Half-precision
operands on a CUDA device of compute capability 9.x only.
The token count is a compile-time constant (padded to whole K-steps, so one compilation per
padded length): with a run-time K loop ptxas cannot prove the epilogue's accumulator finished
and serialises every product.  Checked against float64 on the GPU by benchmarks/gpu_check.py.
"""

from __future__ import annotations

import torch

from .fused import thresholds_on

try:  # Gluon ships with Triton >= 3.5; CPU installs have neither
    import triton
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                                   warpgroup_mma_wait)
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    HAVE_GLUON = True
except Exception:  # pragma: no cover - ImportError, or an older Triton without these names
    HAVE_GLUON = False


def available(x: torch.Tensor) -> bool:
    """Can this kernel run on x's device (a Hopper GPU) and dtype?"""
    return (HAVE_GLUON and x.is_cuda and x.dtype in (torch.bfloat16, torch.float16)
            and torch.cuda.get_device_capability(x.device)[0] == 9)


if HAVE_GLUON:

    @gluon.jit
    def _epilogue(acc, w_smem, s_acc, P1, P2, PC, THR, row0, pstride, a_desc, a_out, a_row, i0,
                  NTHR: gl.constexpr, layout: gl.constexpr, BO: gl.constexpr, WRITE_A: gl.constexpr):
        """Reduce one sample's finished tile: Σ_b, and per-row Σ A, Σ A², counts (no cross-warp barrier);
        with WRITE_A, also send A to global memory in bf16 (for the Gram) by an asynchronous TMA store."""
        a = gl.abs(acc * w_smem.load(layout).to(gl.float32))  # out-of-range lanes: G = W = 0
        if WRITE_A:
            tma.store_wait(0)  # the previous sample's store has finished reading a_out
            gl.thread_barrier()
            a_out.store(a.to(a_desc.dtype))
            fence_async_shared()
            gl.thread_barrier()
            tma.async_copy_shared_to_global(a_desc, [a_row, i0], a_out)
        rows = row0 + gl.arange(0, BO, layout=gl.SliceLayout(1, layout))
        gl.store(P1 + rows, gl.sum(a, axis=1))
        gl.store(P2 + rows, gl.sum(a * a, axis=1))
        for j in gl.static_range(NTHR):
            gl.store(PC + j * pstride + rows, gl.sum((a > gl.load(THR + j)).to(gl.int32), axis=1))
        return s_acc + a

    @gluon.jit
    def _sample(acc, prev, s_acc, it, b, has_prev, d_desc, x_desc, a_bufs, b_bufs, bars, w_smem,
                P1, P2, PC, THR, tile, n_tiles, B, T, O, o0, i0, n_iter, a_desc, a_out,
                NTHR: gl.constexpr, layout: gl.constexpr, STAGES: gl.constexpr, KT: gl.constexpr,
                OUT: gl.constexpr, WRITE_A: gl.constexpr):
        """Issue sample b's products into ``acc``; while the first OUT are in flight, reduce ``prev`` (sample b-1)."""
        BK: gl.constexpr = d_desc.block_type.shape[0]
        BO: gl.constexpr = d_desc.block_type.shape[1]
        for kk in gl.static_range(KT):
            s = it % STAGES
            mbarrier.wait(bars.index(s), (it // STAGES) & 1)
            acc = warpgroup_mma(a_bufs.index(s).permute((1, 0)), b_bufs.index(s), acc, use_acc=kk > 0,
                                is_async=True)
            # at most the last OUT products in flight: once this sample has issued OUT of them,
            # every product of sample b-1 is done and its epilogue runs while these OUT are computed
            acc, prev = warpgroup_mma_wait(OUT, deps=(acc, prev))
            nxt = it + STAGES - OUT  # refill the stage the product OUT steps back read
            if (nxt >= STAGES) & (nxt < n_iter):
                sn = nxt % STAGES
                row = (nxt // KT) * T + (nxt % KT) * BK
                mbarrier.expect(bars.index(sn), d_desc.block_type.nbytes + x_desc.block_type.nbytes)
                tma.async_copy_global_to_shared(d_desc, [row, o0], bars.index(sn), a_bufs.index(sn))
                tma.async_copy_global_to_shared(x_desc, [row, i0], bars.index(sn), b_bufs.index(sn))
            if kk == OUT - 1:
                if has_prev:
                    s_acc = _epilogue(prev, w_smem, s_acc, P1, P2, PC, THR, ((b - 1) * n_tiles + tile) * BO,
                                      B * n_tiles * BO, a_desc, a_out, (b - 1) * O + o0, i0, NTHR, layout, BO,
                                      WRITE_A)
            it += 1
        return acc, prev, s_acc, it

    @gluon.jit
    def _wgmma_act(d_desc, x_desc, w_desc, a_desc, SUM, BASE, P1, P2, PC, THR, B, T: gl.constexpr, O, I,
                   NTHR: gl.constexpr, GROUP: gl.constexpr, STAGES: gl.constexpr, OUT: gl.constexpr,
                   HAS_BASE: gl.constexpr, WRITE_A: gl.constexpr, num_warps: gl.constexpr):
        BK: gl.constexpr = d_desc.block_type.shape[0]
        BO: gl.constexpr = d_desc.block_type.shape[1]
        BI: gl.constexpr = x_desc.block_type.shape[1]
        layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                         instr_shape=[16, BI, 16])
        tile = gl.program_id(0)
        n_o = gl.cdiv(O, BO)
        n_i = gl.cdiv(I, BI)
        n_tiles = n_o * n_i
        if GROUP > 0:  # programs running together cover GROUP row tiles: their δ and X tiles stay in L2
            per_group = GROUP * n_i
            first_o = (tile // per_group) * GROUP
            size = gl.minimum(n_o - first_o, GROUP)
            o0 = (first_o + (tile % per_group) % size) * BO
            i0 = ((tile % per_group) // size) * BI
        else:
            o0 = (tile % n_o) * BO
            i0 = (tile // n_o) * BI

        a_bufs = gl.allocate_shared_memory(d_desc.dtype, [STAGES, BK, BO], d_desc.layout)
        b_bufs = gl.allocate_shared_memory(x_desc.dtype, [STAGES, BK, BI], x_desc.layout)
        w_smem = gl.allocate_shared_memory(w_desc.dtype, [BO, BI], w_desc.layout)
        if WRITE_A:
            a_out = gl.allocate_shared_memory(a_desc.dtype, [BO, BI], a_desc.layout)
        else:
            a_out = w_smem  # unused
        bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        wbar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        for s in gl.static_range(STAGES):
            mbarrier.init(bars.index(s), count=1)
        mbarrier.init(wbar, count=1)

        KT: gl.constexpr = T // BK
        n_iter = B * KT
        mbarrier.expect(wbar, w_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(w_desc, [o0, i0], wbar, w_smem)
        for s in gl.static_range(STAGES):  # fill the ring
            if s < n_iter:
                row = (s // KT) * T + (s % KT) * BK
                mbarrier.expect(bars.index(s), d_desc.block_type.nbytes + x_desc.block_type.nbytes)
                tma.async_copy_global_to_shared(d_desc, [row, o0], bars.index(s), a_bufs.index(s))
                tma.async_copy_global_to_shared(x_desc, [row, i0], bars.index(s), b_bufs.index(s))
        mbarrier.wait(wbar, 0)

        s_acc = gl.zeros((BO, BI), gl.float32, layout)
        acc0 = gl.zeros((BO, BI), gl.float32, layout)
        acc1 = gl.zeros((BO, BI), gl.float32, layout)
        it = 0
        for p in range(B // 2):  # unrolled by two: the accumulators swap roles every sample
            acc0, acc1, s_acc, it = _sample(acc0, acc1, s_acc, it, 2 * p, p > 0, d_desc, x_desc, a_bufs, b_bufs,
                                            bars, w_smem, P1, P2, PC, THR, tile, n_tiles, B, T, O, o0, i0, n_iter,
                                            a_desc, a_out, NTHR, layout, STAGES, KT, OUT, WRITE_A)
            acc1, acc0, s_acc, it = _sample(acc1, acc0, s_acc, it, 2 * p + 1, p >= 0, d_desc, x_desc, a_bufs,
                                            b_bufs, bars, w_smem, P1, P2, PC, THR, tile, n_tiles, B, T, O, o0, i0,
                                            n_iter, a_desc, a_out, NTHR, layout, STAGES, KT, OUT, WRITE_A)
        if B % 2 == 1:
            acc0, acc1, s_acc, it = _sample(acc0, acc1, s_acc, it, B - 1, B > 1, d_desc, x_desc, a_bufs, b_bufs,
                                            bars, w_smem, P1, P2, PC, THR, tile, n_tiles, B, T, O, o0, i0, n_iter,
                                            a_desc, a_out, NTHR, layout, STAGES, KT, OUT, WRITE_A)
            acc0 = warpgroup_mma_wait(0, deps=(acc0,))
            s_acc = _epilogue(acc0, w_smem, s_acc, P1, P2, PC, THR, ((B - 1) * n_tiles + tile) * BO,
                              B * n_tiles * BO, a_desc, a_out, (B - 1) * O + o0, i0, NTHR, layout, BO, WRITE_A)
        else:
            acc1 = warpgroup_mma_wait(0, deps=(acc1,))
            s_acc = _epilogue(acc1, w_smem, s_acc, P1, P2, PC, THR, ((B - 1) * n_tiles + tile) * BO,
                              B * n_tiles * BO, a_desc, a_out, (B - 1) * O + o0, i0, NTHR, layout, BO, WRITE_A)
        for s in gl.static_range(STAGES):
            mbarrier.invalidate(bars.index(s))
        mbarrier.invalidate(wbar)
        if WRITE_A:
            tma.store_wait(0)

        ro = o0 + gl.arange(0, BO, layout=gl.SliceLayout(1, layout))
        ri = i0 + gl.arange(0, BI, layout=gl.SliceLayout(0, layout))
        offs = ro[:, None] * I + ri[None, :]
        m2 = (ro[:, None] < O) & (ri[None, :] < I)
        if HAS_BASE:  # the running sum of earlier batches, added here instead of in a separate pass
            s_acc += gl.load(BASE + offs, mask=m2, other=0.0)
        gl.store(SUM + offs, s_acc, mask=m2)


def wgmma_reduce(x: torch.Tensor, d: torch.Tensor, W: torch.Tensor, thresholds: tuple[float, ...],
                 want_a: bool = False, block: tuple[int, int, int] = (128, 128, 64), num_stages: int = 4,
                 group: int = 8, outstanding: int = 1, base: torch.Tensor | None = None):
    """Reductions of A_b = |δ_bᵀ X_b ⊙ W| for one nn.Linear, as ``fused.fused_reduce``.

    Returns (base + sum_b A_b [O, I] float32, s1 [B], s2 [B], counts [B, n_thr], A_bf16 [B, O, I] or None);
    ``base`` (float32, optional) is read, never written.  ``want_a`` needs O to be a multiple of the
    tile height (``a_fits``): A is stored by whole tiles of a [B·O, I] view.
    """
    B, T, I = x.shape
    O = W.shape[0]
    assert d.shape == (B, T, O) and W.shape == (O, I), (x.shape, d.shape, W.shape)
    BO, BI, BK = block
    if want_a and O % BO:
        raise ValueError(f"wgmma_reduce: A needs O ({O}) to be a multiple of {BO}; use fused.fused_reduce")
    if T % BK:  # TMA reads δ and X as [B·T, ·]: pad each sample to whole K-steps (zero rows add nothing)
        pad = BK - T % BK
        x = torch.nn.functional.pad(x, (0, 0, 0, pad))
        d = torch.nn.functional.pad(d, (0, 0, 0, pad))
        T += pad
    x2 = x.contiguous().view(B * T, I)
    d2 = d.contiguous().view(B * T, O)
    W = W.contiguous()
    gdt = gl.bfloat16 if x.dtype == torch.bfloat16 else gl.float16
    d_desc = TensorDescriptor.from_tensor(d2, [BK, BO], gl.NVMMASharedLayout.get_default_for([BK, BO], gdt))
    x_desc = TensorDescriptor.from_tensor(x2, [BK, BI], gl.NVMMASharedLayout.get_default_for([BK, BI], gdt))
    w_desc = TensorDescriptor.from_tensor(W, [BO, BI], gl.NVMMASharedLayout.get_default_for([BO, BI], gdt))
    n_tiles = triton.cdiv(O, BO) * triton.cdiv(I, BI)
    dev = x.device
    a16 = None
    a_desc = w_desc  # a placeholder the kernel ignores without WRITE_A
    if want_a:  # bf16 whatever the operands: A's range is that of G·W, beyond fp16's
        a16 = torch.empty(B, O, I, dtype=torch.bfloat16, device=dev)
        a_desc = TensorDescriptor.from_tensor(a16.view(B * O, I), [BO, BI],
                                              gl.NVMMASharedLayout.get_default_for([BO, BI], gl.bfloat16))
    nthr = len(thresholds)
    out_sum = torch.empty(O, I, dtype=torch.float32, device=dev)
    # per (sample, tile row) partials, laid out so that each sample's are contiguous: cheap final sums
    p1 = torch.empty(B, n_tiles * BO, dtype=torch.float32, device=dev)
    p2 = torch.empty(B, n_tiles * BO, dtype=torch.float32, device=dev)
    pc = torch.empty(max(nthr, 1), B, n_tiles * BO, dtype=torch.int32, device=dev)
    thr = thresholds_on(thresholds, dev)
    _wgmma_act[(n_tiles,)](d_desc, x_desc, w_desc, a_desc, out_sum, out_sum if base is None else base, p1, p2, pc,
                           thr, B, T, O, I, NTHR=nthr, GROUP=group, STAGES=num_stages,
                           OUT=max(1, min(outstanding, T // BK)), HAS_BASE=base is not None, WRITE_A=want_a,
                           num_warps=BO // 16)
    counts = pc.sum(2, dtype=torch.int64).T[:, :nthr]
    return out_sum, p1.sum(1), p2.sum(1), counts, a16


def fits(W: torch.Tensor) -> bool:
    """Can TMA address this weight's δ, X and W?  Rows of 16-byte multiples: O and I multiples of 8."""
    return W.shape[0] % 8 == 0 and W.shape[1] % 8 == 0


def a_fits(W: torch.Tensor, block: tuple[int, int, int] = (128, 128, 64)) -> bool:
    """Can ``wgmma_reduce`` also return A for this weight (its rows a whole number of tiles)?"""
    return fits(W) and W.shape[0] % block[0] == 0
