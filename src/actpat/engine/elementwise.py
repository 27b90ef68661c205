"""Compiled element-wise parts of LLaMA-style decoder blocks: RMSNorm, rotary embedding, SwiGLU.

In eager PyTorch each of these is a chain of small kernels (an RMSNorm forward alone is six,
its backward more), each a full pass over the activations: on an H200 they took 105 ms of a
466 ms scoring batch at 7B (benchmarks/NOTES.md).  ``torch.compile`` of just these functions
fuses each chain, forward and backward, into one or two kernels.  The linear layers stay
eager, so the scorer's per-matrix hooks see exactly what they saw before.

Only modules whose code is byte for byte the LLaMA implementation's are replaced (Mistral,
Qwen2 and others generated from it qualify; Gemma's RMSNorm, which scales by 1 + w, does
not), and only while the context manager is active.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import sys

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

BACKEND = "inductor"  # tests use "aot_eager": the same tracing and autograd, no code generation

# Measured on an H200 with LLaMA-2-7B shapes (benchmarks/bench_compile.py, NOTES.md): compiling costs
# each fresh process 5 s (warm inductor cache) to 11 s (empty cache), and makes a pass ~13% faster.
COMPILE_S = 10.0
SAVED = 0.13
EAGER_FLOPS = 350e12  # the eager engine's rate there: 6 FLOPs per scored weight and token


def worth_compiling(n_weights: int, n_tokens: int) -> bool:
    """``elementwise: auto`` on a GPU: compile only a run long enough to win the compilation back (at 7B,
    ~2700 samples of 256 tokens).  From the workload alone, so the same run always makes the same choice;
    slower GPUs would win sooner, so this errs towards eager."""
    return SAVED * 6 * n_weights * n_tokens / EAGER_FLOPS > COMPILE_S


def rms_norm(x, weight, eps: float):
    xf = x.to(torch.float32)
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


def silu_mul(gate, up):
    return F.silu(gate) * up


def _rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rotary(q, k, cos, sin, unsqueeze_dim=1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


class _Compiled:
    """``fn`` compiled on first use; eager for good (with one warning) if compiling fails."""

    def __init__(self, fn):
        self.fn = fn
        self.compiled = None
        self.failed = False

    def __call__(self, *args, **kwargs):
        if not self.failed:
            try:
                if self.compiled is None:
                    # round intermediates to bf16/fp16 where eager PyTorch does: the same numbers, not better ones
                    opts = {"emulate_precision_casts": True} if BACKEND == "inductor" else None
                    self.compiled = torch.compile(self.fn, backend=BACKEND, dynamic=True, options=opts)
                return self.compiled(*args, **kwargs)
            except Exception as e:  # no compiler, an unsupported backend...: slower, same numbers
                self.failed = True
                log.warning("torch.compile of %s failed (%s: %s); using eager PyTorch (scoring.elementwise: "
                            "eager skips the attempt)", self.fn.__name__, type(e).__name__, str(e)[:200])
        return self.fn(*args, **kwargs)


_FUNCS = {fn: _Compiled(fn) for fn in (rms_norm, silu_mul, rotary)}


def _code_key(fn):
    """What a function computes, without its docstring: bytecode, names and other constants."""
    co = getattr(inspect.unwrap(fn), "__code__", None)
    if co is None:
        return None
    consts = co.co_consts[1:] if co.co_consts and isinstance(co.co_consts[0], str) else co.co_consts
    return co.co_code, co.co_names, consts


def _llama():
    from transformers.models.llama import modeling_llama as ml

    return ml


def _is_silu(act) -> bool:
    from transformers.activations import SiLUActivation

    return isinstance(act, (torch.nn.SiLU, SiLUActivation))


@contextlib.contextmanager
def compiled_blocks(model, compile: bool = True):
    """Within the block, the model's LLaMA-style RMSNorm, SwiGLU and rotary run through ``rms_norm``,
    ``silu_mul`` and ``rotary`` (compiled unless ``compile`` is false).  Yields what was replaced: counts of
    modules (RMSNorm, SwiGLU) and of model files whose rotary function was swapped."""
    ml = _llama()
    norm_key, mlp_key, rope_key = (_code_key(ml.LlamaRMSNorm.forward), _code_key(ml.LlamaMLP.forward),
                                   _code_key(ml.apply_rotary_pos_emb))
    call = (lambda fn: _FUNCS[fn]) if compile else (lambda fn: fn)
    norm, mlp, rope = call(rms_norm), call(silu_mul), call(rotary)
    patched, swapped = [], []  # (module, attribute, what it held), (model file, its rotary function)
    done = {"rms_norm": 0, "swiglu": 0, "rotary": 0}

    def replace(mod, fn):
        # accelerate's device hooks (device_map) wrap forward per instance and call _old_forward after moving
        # the inputs: replace that, so a model split over GPUs computes exactly what it does on one
        attr = "forward"
        if "forward" in vars(mod):
            if "_old_forward" not in vars(mod):  # some other per-instance wrapper: leave the module alone
                return False
            attr = "_old_forward"
        patched.append((mod, attr, vars(mod).get(attr)))
        setattr(mod, attr, fn)
        return True

    try:
        for mod in model.modules():
            key = _code_key(type(mod).forward)
            if key is None:
                continue
            if key == norm_key:
                done["rms_norm"] += replace(mod, lambda x, m=mod: norm(x, m.weight, m.variance_epsilon))
            elif key == mlp_key and _is_silu(mod.act_fn):
                done["swiglu"] += replace(mod, lambda x, m=mod: m.down_proj(mlp(m.gate_proj(x), m.up_proj(x))))
            elif "apply_rotary_pos_emb" in key[1]:  # an attention module: swap the function in its model's file
                ns = sys.modules[type(mod).__module__]
                orig = getattr(ns, "apply_rotary_pos_emb", None)
                if orig is not None and orig is not rope and _code_key(orig) == rope_key:
                    ns.apply_rotary_pos_emb = rope
                    swapped.append((ns, orig))
                    done["rotary"] += 1
        yield done
    finally:
        for mod, attr, held in reversed(patched):
            if held is None:
                delattr(mod, attr)
            else:
                setattr(mod, attr, held)
        for ns, orig in reversed(swapped):
            ns.apply_rotary_pos_emb = orig
