"""Bad models: refused with a message saying why, and no untrusted code or pickle ever runs.

Each case is a local directory built here from tiny random models (no network): a missing path,
an encoder (BERT) that AutoModelForCausalLM would happily load, a checkpoint with missing
weights, a pickle-only checkpoint (with a payload that would leave a marker file if unpickled),
a directory whose config.json asks for custom code (whose module leaves a marker file if
imported), and a model whose decoder blocks cannot be found.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from actpat.engine import jobs
from actpat.engine.scorer import ActivationScorer, ScoreOptions
from actpat.modelio import ModelError, check_causal, find_blocks, load_model

from helpers.tiny import save_tiny_model, tiny_llama, tiny_tokenizer


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    save_tiny_model(d / "llama")
    return d


def _bert(path: Path, head: bool, is_decoder: bool = False) -> Path:
    from transformers import BertConfig, BertLMHeadModel, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=320,
                     is_decoder=is_decoder)
    (BertLMHeadModel if head else BertModel)(cfg).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def test_good_model_loads(base):
    model, tok = load_model(str(base / "llama"))
    assert type(model).__name__ == "LlamaForCausalLM" and tok.padding_side == "right"
    assert not any(p.requires_grad for p in model.parameters())


def test_missing_path(tmp_path):
    with pytest.raises(ModelError, match=r"model path .*nope does not exist"):
        load_model(str(tmp_path / "nope"))


def test_directory_without_config_or_weights(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="has no config.json: not a Hugging Face model directory"):
        load_model(str(tmp_path / "empty"))
    (tmp_path / "noweights").mkdir()
    tiny_llama(torch.float32).config.save_pretrained(tmp_path / "noweights")
    with pytest.raises(ModelError, match=r"holds no weights"):
        load_model(str(tmp_path / "noweights"))


def test_unreadable_config_json(base, tmp_path):
    d = tmp_path / "garbled"
    save_tiny_model(d)
    (d / "config.json").write_text("{ this is not json")
    with pytest.raises(ModelError, match="cannot read the config"):
        load_model(str(d))


def test_encoder_without_lm_head_is_refused(tmp_path):
    """A saved BertModel: AutoModelForCausalLM builds a BertLMHeadModel with a random head (it only warns)."""
    d = _bert(tmp_path / "bert", head=False)
    with pytest.raises(ModelError, match=r"would be randomly initialised \(first: cls\.predictions"):
        load_model(str(d))


def test_bidirectional_encoder_with_all_weights_is_refused(tmp_path):
    """A complete BertLMHeadModel checkpoint loads without missing weights, but attends both ways."""
    d = _bert(tmp_path / "bertlm", head=True)
    with pytest.raises(ModelError, match=r"BertLMHeadModel\) is not a causal language model: its output at the first "
                                         r"position changes with later tokens"):
        load_model(str(d))


def test_causality_probe_accepts_causal_models(tmp_path):
    """Positive controls: the same probe passes LLaMA (fp32/bf16/fp16), GPT-2 and a decoder-mode BERT."""
    from helpers.tiny import tiny_gpt2

    for m in (tiny_llama(torch.float32), tiny_llama(torch.bfloat16), tiny_llama(torch.float16),
              tiny_gpt2(torch.float32)):
        check_causal(m)
    d = _bert(tmp_path / "bertdec", head=True, is_decoder=True)
    model, _ = load_model(str(d))
    assert type(model).__name__ == "BertLMHeadModel"


def test_checkpoint_with_missing_weights_is_refused(base, tmp_path):
    d = tmp_path / "partial"
    save_tiny_model(d)
    st = next(d.glob("*.safetensors"))
    tensors = load_file(st)
    del tensors["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, st, metadata={"format": "pt"})
    with pytest.raises(ModelError, match=r"1 weight\(s\) of LlamaForCausalLM are not in the checkpoint.*"
                                         r"model\.layers\.1\.mlp\.down_proj\.weight"):
        load_model(str(d))


class _Payload:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pickle ran')",))


def _pickle_dir(path: Path, payload_marker: Path | None = None) -> Path:
    m = tiny_llama(torch.float32)
    path.mkdir()
    m.config.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    sd = dict(m.state_dict())
    if payload_marker is None:
        torch.save(sd, path / "pytorch_model.bin")
    else:
        with open(path / "pytorch_model.bin", "wb") as f:
            pickle.dump({**sd, "payload": _Payload(payload_marker)}, f)
    return path


def test_pickle_only_checkpoint_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "PICKLE_RAN"
    d = _pickle_dir(tmp_path / "evil", marker)
    with pytest.raises(ModelError, match=r"holds only pickle checkpoints.*allow_pickle: true"):
        load_model(str(d))
    assert not marker.exists()
    with pytest.raises(ModelError, match="allow_pickle"):  # the scoring job's entry point as well
        jobs.load_for_job({"load_from": str(d), "dtype": "float32", "device": "cpu"})
    assert not marker.exists()


def test_pickle_checkpoint_loads_only_when_allowed(tmp_path):
    d = _pickle_dir(tmp_path / "pk")
    with pytest.raises(ModelError, match="pickle"):
        load_model(str(d))
    model, _ = load_model(str(d), allow_pickle=True)
    want = tiny_llama(torch.float32).state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, want[k]), k


def test_safetensors_preferred_over_pickle(tmp_path):
    """With both, only the safetensors file is read, even if the pickle would run code."""
    marker = tmp_path / "PICKLE_RAN"
    d = tmp_path / "both"
    save_tiny_model(d)
    with open(d / "pytorch_model.bin", "wb") as f:
        pickle.dump({"payload": _Payload(marker)}, f)
    model, _ = load_model(str(d), allow_pickle=False)
    assert type(model).__name__ == "LlamaForCausalLM" and not marker.exists()


def _remote_code_dir(path: Path, marker: Path, model_type: str) -> Path:
    save_tiny_model(path)
    (path / "custom_model.py").write_text(
        f"open({str(marker)!r}, 'w').write('custom code ran')\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n\n"
        f"class CustomConfig(LlamaConfig):\n    model_type = {model_type!r}\n\n"
        "class CustomModel(LlamaForCausalLM):\n    config_class = CustomConfig\n")
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(model_type=model_type, architectures=["CustomModel"],
               auto_map={"AutoConfig": "custom_model.CustomConfig", "AutoModelForCausalLM": "custom_model.CustomModel"})
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def test_remote_code_is_refused_and_never_imported(tmp_path):
    marker = tmp_path / "CUSTOM_CODE_RAN"
    d = _remote_code_dir(tmp_path / "remote", marker, "actpat_custom")
    with pytest.raises(ModelError, match=r"needs custom code from its repository \(trust_remote_code\).*"
                                         r"set trust_remote_code: true"):
        load_model(str(d))
    assert not marker.exists()
    with pytest.raises(ModelError, match="trust_remote_code"):
        jobs.load_for_job({"load_from": str(d), "dtype": "float32", "device": "cpu", "trust_remote_code": False})
    assert not marker.exists()
    # control: the marker mechanism works, so its absence above means the code did not run
    model, _ = load_model(str(d), trust_remote_code=True)
    assert marker.read_text() == "custom code ran" and type(model).__name__ == "CustomModel"


def test_auto_map_on_a_known_architecture_uses_the_library_code(tmp_path):
    """config.json of a known model_type with an auto_map: the library's class, never the directory's code."""
    marker = tmp_path / "CUSTOM_CODE_RAN"
    d = _remote_code_dir(tmp_path / "known", marker, "llama")
    model, _ = load_model(str(d))
    assert type(model).__module__.startswith("transformers.models.llama") and not marker.exists()


def test_blocks_that_cannot_be_found_name_the_class():
    class OddLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = tiny_llama(torch.float32).config
            self.stack = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4))

    with pytest.raises(ModelError, match=r"cannot find the decoder blocks of OddLM: no ModuleList of 3 blocks"):
        find_blocks(OddLM())
    with pytest.raises(ModelError, match="OddLM"):
        ActivationScorer(OddLM(), tiny_tokenizer())


def test_regrouped_blocks_of_a_real_model(base):
    """A LLaMA whose blocks were regrouped into a Sequential: refused, naming the class."""
    model, tok = load_model(str(base / "llama"))
    model.model.layers = nn.Sequential(*model.model.layers)
    with pytest.raises(ModelError, match=r"cannot find the decoder blocks of LlamaForCausalLM"):
        ActivationScorer(model, tok, ScoreOptions())


def test_scoring_job_with_a_bad_model_writes_nothing(tmp_path):
    d = _bert(tmp_path / "bertlm", head=True)
    pl.DataFrame({"id": ["a", "b"], "domain": "x",
                  "text": ["one text", "two texts"]}).write_parquet(tmp_path / "x.parquet")
    out = tmp_path / "out"
    with pytest.raises(ModelError, match="not a causal language model"):
        jobs.score_domain_shard(model_name="bert", load={"load_from": str(d), "dtype": "float32"},
                                table=tmp_path / "x.parquet",
                                rows=range(0, 2), opts=ScoreOptions(), batch_size=2, out_store=out / "s.zarr",
                                out_stats=out / "s.stats.parquet", out_gram=out / "s.gram.parquet")
    assert not out.exists() or not any(out.iterdir())


def test_offline_unknown_hub_id(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"cannot find model 'no-such-org/no-such-model'"):
        load_model("no-such-org/no-such-model")


def test_fingerprint_tells_same_shaped_checkpoints_apart(tmp_path):
    from actpat.modelio import model_fingerprint

    a = model_fingerprint(str(save_tiny_model(tmp_path / "a", seed=0)))
    b = model_fingerprint(str(save_tiny_model(tmp_path / "b", seed=1)))
    assert a["files"] == b["files"]  # same architecture: identical file sizes
    assert a["sha256"] != b["sha256"]
    c = model_fingerprint(str(save_tiny_model(tmp_path / "c", seed=0)))
    assert a["sha256"] == c["sha256"] and np.all([len(v) == 64 for v in a["sha256"].values()])


# ------------------------------------------------------------------ weights changed in place

def _overwrite_middle(path: Path, data: bytes) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(data)


def test_weights_changed_in_place_are_refused_naming_the_file(tmp_path):
    from actpat import contenthash

    d = save_tiny_model(tmp_path / "m")
    contenthash.write_manifest(d)  # what convert_model records
    load_model(str(d))
    assert contenthash.state(d) == contenthash.UNCHANGED
    # 64 KiB of finite garbage in the middle (plausible float32 values): loads fine without the manifest
    rng = np.random.default_rng(0)
    _overwrite_middle(d / "model.safetensors", rng.normal(0, 0.02, 16384).astype(np.float32).tobytes())
    assert contenthash.state(d).startswith("changed:")  # the readers' params change: they rerun
    with pytest.raises(ModelError, match=r"model.safetensors was changed \(its SHA-256 differs.*Delete .* convert"):
        load_model(str(d))


def test_unreadable_or_non_finite_weights_name_the_file_not_the_architecture(tmp_path):
    d = save_tiny_model(tmp_path / "m")  # a user's directory: no manifest
    w = d / "model.safetensors"
    good = w.read_bytes()
    _overwrite_middle(w, b"\xff" * (64 << 10))  # 0xFF floats are NaN
    with pytest.raises(ModelError, match=r"hold NaN or infinite values .*model\.safetensors"):
        load_model(str(d))
    w.write_bytes(b"\xff" * 8 + good[8:])  # the header length is garbage
    with pytest.raises(ModelError, match=r"cannot (read|load) the weight file|cannot load weights"):
        load_model(str(d))
