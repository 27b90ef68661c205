"""Loading causal language models and locating the weights the paper scores.

One loader serves every model: a converted offline directory, any local
Hugging Face directory, or a hub id.  ``trust_remote_code`` stays off unless the
caller turns it on, and pickle checkpoints are refused unless explicitly allowed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .contenthash import ContentError, file_sha256, read_manifest, verify, write_manifest

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelError(RuntimeError):
    """A model that cannot be used, with a message saying why and what to do."""


@dataclass(frozen=True)
class ScoredWeight:
    """One weight matrix inside a decoder block."""

    name: str  # Hugging Face parameter name, e.g. model.layers.0.self_attn.q_proj.weight
    layer: int  # 0-indexed decoder block
    matrix: str  # short name inside the block, e.g. self_attn.q_proj
    module: nn.Module
    transposed: bool  # GPT-2 Conv1D keeps weight as [in, out]

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight


# ----------------------------------------------------------------------------- conversion


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Convert a GGUF checkpoint into a plain float32 safetensors model directory.

    ``save_pretrained`` refuses GGUF-loaded models, so the de-quantized weights are
    copied into a freshly built model of the same config.  Written to a temporary
    folder and renamed, so an interrupted conversion leaves nothing that looks done.
    """

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .atomic import atomic_dir

    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    if not gguf_path.is_file():
        raise ModelError(f"GGUF file {gguf_path} does not exist; fetch the model asset first")
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    m = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    cfg = m.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    clean = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(m.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and cfg.tie_word_embeddings)]
    if missing or unexpected:
        raise ModelError(f"GGUF conversion of {gguf_path.name}: missing {missing}, unexpected {unexpected}")
    clean.tie_weights()
    with atomic_dir(out_dir) as tmp:
        clean.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "SOURCE.json").write_text(json.dumps(
            {"gguf": gguf_path.name, "sha256": file_sha256(gguf_path)}, indent=2))
        write_manifest(tmp)  # full SHA-256 of every file: loads refuse a file changed in place
    return out_dir


# ----------------------------------------------------------------------------- loading


def _check_local_dir(path: Path, allow_pickle: bool) -> None:
    if not path.is_dir():
        raise ModelError(f"model path {path} does not exist or is not a directory")
    if not (path / "config.json").is_file():
        raise ModelError(f"{path} has no config.json: not a Hugging Face model directory")
    has_st = any(path.glob("*.safetensors"))
    has_pickle = any(path.glob("*.bin")) or any(path.glob("*.pt")) or any(path.glob("*.pth"))
    if not has_st and has_pickle and not allow_pickle:
        raise ModelError(
            f"{path} holds only pickle checkpoints (*.bin/*.pt); loading them can execute code. "
            "Convert them to safetensors, or set allow_pickle: true for this model if you trust the files."
        )
    if not has_st and not has_pickle:
        raise ModelError(f"{path} holds no weights (*.safetensors)")


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when a GPU is visible, else cpu; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device: cuda was configured but no CUDA device is visible; use device: cpu or auto")
    return device


def load_model(
    source: str,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    device_map: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    revision: str | None = None,
):
    """Load a causal LM and its tokenizer from a local directory or a hub id.

    The tokenizer is set to right padding; a model without a pad token gets its
    EOS (or id 0) as pad, which is safe because padded positions are masked and
    never reach the scored logit.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(source)
    local = path.exists() or source.startswith((".", "/")) or source.startswith("resources")
    if local:
        _check_local_dir(path, allow_pickle)
        if read_manifest(path) is not None:  # written by this workflow (convert_model): check it
            try:
                verify(path, what="model directory", fix=f"Delete {path} and rerun to convert the model again.")
            except ContentError as e:
                raise ModelError(str(e)) from None
    device = resolve_device(device) if device_map is None else device  # before reading any weights
    kw = dict(trust_remote_code=trust_remote_code, revision=revision)
    try:
        cfg = AutoConfig.from_pretrained(source, **kw)
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise ModelError(
                f"{source} needs custom code from its repository (trust_remote_code). It is off by default "
                "because that code runs on your machine; set trust_remote_code: true for this model if you trust it."
            ) from e
        raise ModelError(f"cannot read the config of {source}: {e}") from e
    except OSError as e:
        if local:  # the directory exists (checked above): its config.json is unreadable
            raise ModelError(f"cannot read the config of {source}: {e}") from e
        raise ModelError(f"cannot find model {source!r}: {e}") from e
    if getattr(cfg, "is_encoder_decoder", False):
        raise ModelError(f"{source} is an encoder-decoder ({type(cfg).__name__}); ActPat scores decoder-only "
                         "causal LMs")
    if dtype not in DTYPES:
        raise ModelError(f"dtype {dtype!r} unknown; use one of {sorted(DTYPES)}")
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            source, dtype=DTYPES[dtype], device_map=device_map,
            use_safetensors=None if allow_pickle else True, output_loading_info=True, **kw)
    except ValueError as e:
        if "Unrecognized configuration class" in str(e) or "AutoModelForCausalLM" in str(e):
            raise ModelError(
                f"{source} ({type(cfg).__name__}) is not a causal language model: AutoModelForCausalLM cannot load it"
            ) from e
        raise
    except OSError as e:
        raise ModelError(f"cannot load weights of {source!r}: {e}") from e
    except Exception as e:  # e.g. safetensors_rust.SafetensorsError for a damaged header
        if "safetensors" in type(e).__module__.lower() or "header" in str(e).lower():
            files = ", ".join(sorted(p.name for p in path.glob("*.safetensors"))) if local else source
            raise ModelError(f"cannot read the weight file(s) of {source} ({files}): {e}") from e
        raise
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        # transformers fills them with random numbers and only warns: scores would be meaningless
        raise ModelError(
            f"{source}: {len(missing)} weight(s) of {type(model).__name__} are not in the checkpoint and would be "
            f"randomly initialised (first: {', '.join(missing[:3])}); the checkpoint does not match its "
            "config.json or is not a causal LM checkpoint")
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:  # a damaged weight file, not an architecture problem (check_causal would say so)
        files = ", ".join(sorted(p.name for p in path.glob("*.safetensors"))) if local else source
        raise ModelError(f"{source}: {len(bad)} weight tensor(s) hold NaN or infinite values (first: {bad[0]}); "
                         f"the weight file(s) ({files}) are damaged or not what the config describes")
    if device_map is None:
        model.to(device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    check_causal(model, name=str(source))
    tok = AutoTokenizer.from_pretrained(source, **kw)
    tok.padding_side = "right"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.convert_ids_to_tokens(0)
    return model, tok


# The config keys of a model that change the loaded weights or numerics (rules pass them as
# params: load, with load_from, the directory or hub id to load).
LOAD_KEYS = ("dtype", "device", "device_map", "trust_remote_code", "allow_pickle", "revision")


def load_for_job(load: dict):
    """The model and tokenizer a job's ``load`` spec names (``load_from`` and ``LOAD_KEYS``)."""
    return load_model(load["load_from"], **{k: load[k] for k in LOAD_KEYS if k in load})


@torch.no_grad()
def check_causal(model: nn.Module, name: str = "") -> None:
    """Refuse a model whose first position sees later tokens (an encoder such as BERT, which
    AutoModelForCausalLM also loads): the scored logit would then depend on the whole input.

    Two inputs that differ only after position 0 must give the same logits at position 0;
    in a causal model they are bit-identical (same kernels, same prefix), in an encoder they differ.
    """
    V = int(getattr(model.config, "vocab_size", 0) or model.get_output_embeddings().weight.shape[0])
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [1, 7, 8, 9, 10, 11]]) % max(V, 1)
    dev = model.get_input_embeddings().weight.device
    logits = model(input_ids=ids.to(dev), use_cache=False).logits[:, 0].float()
    diff = float((logits[0] - logits[1]).abs().max())
    scale = float(logits.abs().max())
    tol = 1e-5 if next(model.parameters()).dtype in (torch.float32, torch.float64) else 1e-3
    if not diff <= tol * max(scale, 1e-30):
        raise ModelError(
            f"{name or type(model).__name__} ({type(model).__name__}) is not a causal language model: its "
            f"output at the first position changes with later tokens (relative change {diff / max(scale, 1e-30):.2g}). "
            "ActPat scores decoder-only causal LMs (an encoder such as BERT cannot be used)")


def _file_digest(path: Path, sample: int = 1 << 20) -> str:
    """SHA-256 of the whole file if small, else of its size and first, middle and last MiB
    (enough to tell two checkpoints of one architecture apart without reading gigabytes)."""
    size = path.stat().st_size
    if size <= 64 * sample:
        return file_sha256(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for off in (0, size // 2, size - sample):
            f.seek(off)
            h.update(f.read(sample))
    return "sampled:" + h.hexdigest()


def model_fingerprint(source: str) -> dict:
    """What identifies the weights: file sizes and digests for a local dir, id+revision for the hub."""
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        recorded = (read_manifest(path) or {}).get("files", {})  # full hashes written at conversion
        out = {"path": str(path), "files": {f.name: f.stat().st_size for f in files},
               "sha256": {f.name: recorded[f.name]["sha256"] if f.name in recorded else _file_digest(f)
                          for f in files}}
        src = path / "SOURCE.json"
        if src.is_file():
            out["source"] = json.loads(src.read_text())
        return out
    return {"hub_id": source}


# ----------------------------------------------------------------------------- structure

_BLOCK_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers",
                "model.language_model.layers", "transformer.layers", "backbone.layers")


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Return (prefix, blocks): the ModuleList of decoder blocks."""
    n_layers = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    for path in _BLOCK_PATHS:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return path, obj
    # fall back: the longest ModuleList whose length matches the configured depth
    best = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and (n_layers is None or len(mod) == n_layers):
            if best is None or len(mod) > len(best[1]):
                best = (name, mod)
    if best is None:
        raise ModelError(
            f"cannot find the decoder blocks of {type(model).__name__}: no ModuleList of "
            f"{n_layers} blocks at {', '.join(_BLOCK_PATHS)}"
        )
    return best


def _is_conv1d(mod: nn.Module) -> bool:
    return type(mod).__name__ == "Conv1D" and hasattr(mod, "weight") and mod.weight.dim() == 2


def scored_weights(model: nn.Module, include: str | None = None, exclude: str | None = None) -> list[ScoredWeight]:
    """The 2-D linear weights inside the decoder blocks (the paper's choice).

    Embeddings, lm_head, norms and biases are outside (they are not 2-D linear
    weights of a block).  ``include``/``exclude`` are regular expressions on the
    short matrix name (e.g. ``mlp\\.`` to score only the MLP).
    """
    import re

    prefix, blocks = find_blocks(model)
    out: list[ScoredWeight] = []
    for i, block in enumerate(blocks):
        for name, mod in block.named_modules():
            if isinstance(mod, nn.Linear) or _is_conv1d(mod):
                if include and not re.search(include, name):
                    continue
                if exclude and re.search(exclude, name):
                    continue
                out.append(ScoredWeight(f"{prefix}.{i}.{name}.weight", i, name, mod, _is_conv1d(mod)))
    if not out:
        raise ModelError(f"no linear weights found in the blocks of {type(model).__name__} "
                         f"(include={include!r}, exclude={exclude!r})")
    return out


def num_layers(model: nn.Module) -> int:
    return len(find_blocks(model)[1])
