"""Perplexity and both zero-shot scorers against independent float64 computations."""

import copy
import math

import numpy as np
import polars as pl
import pytest
import torch

from helpers.tiny import PRUNING_LLAMA, PRUNING_TOKENIZER, tiny_llama, tiny_tokenizer
from actpat.evaluate.lm import common_prefix, token_batches
from actpat.evaluate import perplexity as perplexity_module
from actpat.evaluate.perplexity import load_text, make_windows, perplexity
from actpat.evaluate.zeroshot import (
    Question,
    cloze_pairs,
    cloze_predictions,
    evaluate_task,
    paper_predictions,
    select_questions,
)

TEXT = "\n\n".join(["The cat sat on the mat.", "Pruning removes weights; calibration data picks which ones.",
                    "Question: is the sky blue?\nAnswer: yes", "The dog sat on the log."] * 6)


def _f64(model):
    return copy.deepcopy(model).double()


def _direct_ppl(model64, windows, block=None):
    """Token by token: for every prefix of every window run the model and read log p(next token);
    with ``block``, also the NLL sum of each block of ``block`` predicted tokens of each window."""
    nll, n, blocks = 0.0, 0, []
    for w in windows.tolist():
        blocks.append([])
        for t in range(1, len(w)):
            with torch.no_grad():
                logits = model64(input_ids=torch.tensor([w[:t]])).logits[0, -1]
            x = -float(torch.log_softmax(logits, dim=-1)[w[t]])
            nll += x
            n += 1
            if block and (t - 1) % block == 0:
                blocks[-1].append(0.0)
            if block:
                blocks[-1][-1] += x
    return (math.exp(nll / n), n) if block is None else (math.exp(nll / n), n, blocks)


BLOCK_TOKENS = 4


@pytest.mark.parametrize("bos", [False, True])
def test_perplexity_equals_direct_float64_computation(bos, monkeypatch):
    monkeypatch.setattr(perplexity_module, "BLOCK_TOKENS", BLOCK_TOKENS)
    tok = tiny_tokenizer(bos=bos, **PRUNING_TOKENIZER)
    model = tiny_llama(vocab=len(tok), **PRUNING_LLAMA)
    windows = make_windows(tok, TEXT, seq_len=12, max_windows=3)
    assert windows.shape == (3, 12)
    if bos:  # BOS then 11 text tokens per window
        assert (windows[:, 0] == tok.bos_token_id).all()
        stream = tok(TEXT, add_special_tokens=False)["input_ids"]
        assert windows[1, 1:].tolist() == stream[11:22]
    else:
        assert windows.reshape(-1).tolist() == tok(TEXT)["input_ids"][:36]
    got = perplexity(model, windows, batch_size=2)
    want, n, blocks = _direct_ppl(_f64(model), windows, block=BLOCK_TOKENS)
    assert got["tokens"] == n == 3 * 11
    assert got["perplexity"] == pytest.approx(want, rel=1e-5)
    # the blocks paired comparisons resample: 11 predicted tokens per window in blocks of 4, 4 and 3
    assert [len(b) for b in got["block_nll"]] == [3, 3, 3] and got["block_tokens"] == BLOCK_TOKENS
    assert np.allclose(got["block_nll"], blocks, rtol=1e-5)
    assert np.allclose(np.sum(got["block_nll"], 1), got["window_nll"], rtol=1e-12)


def test_stream_bos_mode_keeps_a_single_bos():
    tok = tiny_tokenizer(bos=True, **PRUNING_TOKENIZER)
    w = make_windows(tok, TEXT, 10, 4, bos="stream")
    assert w[0, 0] == tok.bos_token_id and (w[1:, 0] != tok.bos_token_id).all()
    assert w.reshape(-1).tolist() == tok(TEXT)["input_ids"][:40]


def test_windows_cap_and_errors(tmp_path):
    tok = tiny_tokenizer(bos=False, **PRUNING_TOKENIZER)
    assert make_windows(tok, TEXT, 8, None).shape[0] == len(tok(TEXT)["input_ids"]) // 8
    with pytest.raises(ValueError, match="fewer than one window"):
        make_windows(tok, "short", 64)
    p = tmp_path / "held.txt"
    p.write_text(TEXT)
    assert load_text(p) == (TEXT, f"file:{p}")
    with pytest.raises(ValueError, match="heldout_text"):
        load_text(tmp_path / "missing.txt")


def test_load_text_hub_code_path_with_a_local_dataset(tmp_path):
    """The online path (load_dataset + "\\n\\n".join) run on a local parquet dataset of the same layout."""
    d = tmp_path / "wikitext"
    d.mkdir()
    pl.DataFrame({"text": [" = Title = \n", "", " Body text .\n"]}).write_parquet(d / "test-00000.parquet")
    text, src = load_text(hub={"path": str(d), "name": None, "split": "test"})
    assert text == " = Title = \n\n\n\n\n Body text .\n" and src.startswith("hub:")


# ----------------------------------------------------------------------------- zero-shot

QUESTIONS = [
    Question("q1", "mmlu", "The cat sat on the\nA. mat\nB. log\nAnswer:", ("A", "B"), ("mat", "log"), 0,
             "Question: The cat sat on the\nAnswer:"),
    Question("q2", "mmlu", "Is the sky blue?\nA. yes\nB. no\nC. red\nAnswer:", ("A", "B", "C"),
             ("yes", "no", "red dog"), 2, "Question: is the sky blue?\nAnswer:"),
]


def _expected_paper(model64, tok, prefix, q):
    ids = tok(prefix + q.text)["input_ids"]
    with torch.no_grad():
        logits = model64(input_ids=torch.tensor([ids])).logits[0, -1]
    label_ids = [tok(lab)["input_ids"][-1] for lab in q.labels]
    scores = logits[label_ids]
    return scores.numpy(), int(torch.argmax(scores))


def _expected_cloze(model64, tok, prefix, q, bos):
    """Full sequence per choice, float64, no cache: sum of log p of the continuation tokens."""
    lls = []
    for c in q.choices:
        ctx = ([tok.bos_token_id] if bos else []) + tok(prefix + q.cloze, add_special_tokens=False)["input_ids"]
        whole = ([tok.bos_token_id] if bos else []) + tok(prefix + q.cloze + " " + c,
                                                          add_special_tokens=False)["input_ids"]
        cont = whole[len(ctx):]
        seq = ctx + cont
        with torch.no_grad():
            lp = torch.log_softmax(model64(input_ids=torch.tensor([seq])).logits[0], dim=-1)
        lls.append(sum(float(lp[len(ctx) - 1 + k, t]) for k, t in enumerate(cont)))
    lls = np.array(lls)
    nb = np.array([len(c.encode()) for c in q.choices])
    return lls, int(np.argmax(lls)), int(np.argmax(lls / nb))


@pytest.mark.parametrize("bos", [False, True])
@pytest.mark.parametrize("prefix", ["", "A. red\nB. green\nAnswer:A\n###\n" * 3])
def test_scorers_on_a_hand_made_task(bos, prefix):
    tok = tiny_tokenizer(bos=bos, **PRUNING_TOKENIZER)
    model = tiny_llama(vocab=len(tok), seed=5, **PRUNING_LLAMA)
    m64 = _f64(model)
    paper = paper_predictions(model, tok, QUESTIONS, prefix)
    cloze = cloze_predictions(model, tok, QUESTIONS, prefix)
    for q, p, c in zip(QUESTIONS, paper, cloze):
        scores, pred = _expected_paper(m64, tok, prefix, q)
        np.testing.assert_allclose(p["label_logits"], scores, rtol=1e-4, atol=1e-4)
        assert p["pred"] == pred
        lls, acc, acc_norm = _expected_cloze(m64, tok, prefix, q, bos)
        np.testing.assert_allclose(c["loglik"], lls, rtol=1e-4, atol=1e-4)
        assert (c["pred_acc"], c["pred_acc_norm"]) == (acc, acc_norm)


def test_evaluate_task_accuracy_is_the_share_of_gold_predictions():
    tok = tiny_tokenizer(bos=False, **PRUNING_TOKENIZER)
    model = tiny_llama(vocab=len(tok), seed=5, **PRUNING_LLAMA)
    res = evaluate_task(model, tok, QUESTIONS)
    paper = paper_predictions(model, tok, QUESTIONS)
    cloze = cloze_predictions(model, tok, QUESTIONS)
    assert res["paper_acc"] == np.mean([p["pred"] == q.answer for p, q in zip(paper, QUESTIONS)])
    assert res["acc"] == np.mean([c["pred_acc"] == q.answer for c, q in zip(cloze, QUESTIONS)])
    assert res["acc_norm"] == np.mean([c["pred_acc_norm"] == q.answer for c, q in zip(cloze, QUESTIONS)])
    assert res["chance"] == pytest.approx((1 / 2 + 1 / 3) / 2)


def test_question_selection_takes_the_bottom_rows_and_shots_above_them():
    n = 10
    table = pl.DataFrame({
        "id": [f"r{i}" for i in range(n)], "task": ["mmlu"] * n, "text": [f"t{i} Answer:" for i in range(n)],
        "choices": [["a", "b"]] * n, "labels": [["A", "B"]] * n, "answer": [i % 2 for i in range(n)],
        "cloze": [f"c{i}" for i in range(n)],
    })
    qs, shots = select_questions(table, 3, 2)
    assert [q.id for q in qs] == ["r7", "r8", "r9"] and [s.id for s in shots] == ["r5", "r6"]
    with pytest.raises(ValueError, match="fewer than"):
        select_questions(table, 9, 2)
    bad = table.with_columns(pl.lit(None, dtype=pl.String).alias("cloze"))
    with pytest.raises(ValueError, match="row 'r9' has no 'cloze'"):
        select_questions(bad, 1)


def test_cloze_pairs_split_like_the_harness():
    tok = tiny_tokenizer(bos=False, **PRUNING_TOKENIZER)
    ctx, conts = cloze_pairs(tok, "Answer:", ["yes", "no"])
    assert ctx == tok("Answer:")["input_ids"]
    assert conts[0] == tok("Answer: yes")["input_ids"][len(ctx):]
    ctx2, conts2 = cloze_pairs(tok, "Answer: ", ["yes"])  # trailing space moves to the continuation
    assert ctx2 == ctx and conts2[0] == tok("Answer:  yes")["input_ids"][len(ctx):]


def test_batching_helpers():
    assert common_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]], min_len=1) == [1, 2]
    assert common_prefix([[1, 2], [1, 2]], min_len=1) == [1]  # each keeps one token of its own
    assert common_prefix([[1, 2, 3], [1, 2, 4]], min_len=3) == []
    batches = token_batches([5, 1, 9, 3, 7], max_tokens=10)
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4]
    lengths = [5, 1, 9, 3, 7]
    assert all(max(lengths[i] for i in b) * len(b) <= 10 or len(b) == 1 for b in batches)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_evaluation_on_a_gpu_matches_the_cpu():
    """Zero-shot (both scorers) and perplexity with the model on CUDA: same predictions, same numbers
    (every tensor the evaluator builds must follow the model to its device)."""
    tok = tiny_tokenizer(bos=False, **PRUNING_TOKENIZER)
    model = tiny_llama(vocab=len(tok), seed=5, **PRUNING_LLAMA)
    cpu = evaluate_task(model, tok, QUESTIONS)
    ids = tok(TEXT, return_tensors="pt")["input_ids"][:, :64]
    ppl_cpu = perplexity(model, ids)["perplexity"]
    model = model.cuda()
    gpu = evaluate_task(model, tok, QUESTIONS)
    keys = ("acc", "acc_norm", "paper_acc")
    assert {k: gpu[k] for k in keys} == {k: cpu[k] for k in keys}
    assert perplexity(model, ids)["perplexity"] == pytest.approx(ppl_cpu, rel=1e-4)
