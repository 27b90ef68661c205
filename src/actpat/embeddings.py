"""Sentence embeddings from an offline sentence-transformers folder (all-MiniLM-L6-v2).

Re-implements the folder's pipeline (transformer -> mean pooling over real tokens ->
L2 normalisation, per its modules.json) with plain transformers, so no extra
dependency is needed.  Used as an independent measure of text similarity.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def model_dir_of(asset_dir: str | Path) -> Path:
    """The model folder inside the `minilm` asset (or the folder itself)."""
    p = Path(asset_dir)
    return p / "model" if (p / "model" / "config.json").is_file() else p


@torch.no_grad()
def embed_texts(texts: list[str], model_dir: str | Path, batch_size: int = 32,
                max_tokens: int | None = None) -> np.ndarray:
    """Return an (n, d) float32 array of L2-normalised sentence embeddings."""
    from transformers import AutoModel, AutoTokenizer

    model_dir = model_dir_of(model_dir)
    modules = json.loads((model_dir / "modules.json").read_text()) if (model_dir / "modules.json").is_file() else []
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    pooling = {"pooling_mode_mean_tokens": True}
    if (model_dir / "1_Pooling" / "config.json").is_file():
        pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens", False):
        raise ValueError(f"{model_dir}: only mean pooling is supported (pooling config {pooling})")
    if max_tokens is None and (model_dir / "sentence_bert_config.json").is_file():
        max_tokens = json.loads((model_dir / "sentence_bert_config.json").read_text()).get("max_seq_length")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32, use_safetensors=True).eval()  # never unpickle
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_tokens or 256,
                  return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        if not modules or "Normalize" in kinds:
            emb = torch.nn.functional.normalize(emb, dim=-1)
        out.append(emb.numpy().astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size), np.float32)
