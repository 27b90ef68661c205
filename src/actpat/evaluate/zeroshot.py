"""Multiple-choice accuracy with two scorers, reported side by side and never mixed.

``paper`` (paper.md §5.3, the authors' ``eval_*``): one forward pass on the prompt ``text``
(which lists the options and ends in ``Answer:``); the prediction is the argmax, over the
answer labels, of the last-position logit at each label's token, the **last id of
``tokenizer(label)``**.  Caveat (BPE tokenizers): after ``Answer:`` a model usually continues
with the space-prefixed token (``" A"``), whose id differs from ``"A"``'s; the paper's scorer
reads the unprefixed one all the same, so its accuracies are not comparable with harness
numbers and can sit near chance for models that strongly prefer ``" A"``.

``cloze`` (lm-evaluation-harness convention): the log-likelihood of ``" " + choice`` after the
``cloze`` context (context and continuation tokenised as the harness does: the continuation
is ``tok(context + continuation)[len(tok(context)):]``).  ``acc`` takes the argmax of the
summed log-likelihood, ``acc_norm`` of the sum divided by the choice's length in UTF-8 bytes
(the harness divides by ``len(choice)`` in characters; equal for ASCII text).

MMLU gets a fixed few-shot prefix: the paper uses the first 5 ``auxiliary_train`` items, each
as ``text + label + "\\n###\\n"``; offline, the ``mmlu_shots`` rows just above the evaluated
rows of the MMLU table are used (neither scored, which takes rows from the top, nor
evaluated).  The cloze scorer uses the same rows as ``cloze + " " + gold choice + "\\n\\n"``.
Ties go to the first choice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..prune.calibration import adds_bos
from .lm import Prefix, common_prefix, logits_at, make_prefix, pad_id, split_prefix, token_batches

log = logging.getLogger(__name__)

PAPER_SHOT_SEP = "\n###\n"
CLOZE_SHOT_SEP = "\n\n"


class ZeroShotError(ValueError):
    pass


@dataclass(frozen=True)
class Question:
    id: str
    task: str
    text: str
    labels: tuple[str, ...]
    choices: tuple[str, ...]
    answer: int
    cloze: str


def _question(r: dict, where: str) -> Question:
    for col in ("text", "labels", "choices", "answer", "cloze"):
        if r.get(col) is None:
            raise ZeroShotError(f"{where}: row {r.get('id')!r} has no {col!r}; zero-shot domains need "
                                "text, labels, choices, answer and cloze (docs/contracts.md)")
    labels, choices = tuple(r["labels"]), tuple(r["choices"])
    if len(labels) != len(choices) or not 0 <= int(r["answer"]) < len(choices):
        raise ZeroShotError(f"{where}: row {r['id']!r}: {len(labels)} labels, {len(choices)} choices, "
                            f"answer {r['answer']}")
    return Question(str(r["id"]), str(r.get("task")), r["text"], labels, choices, int(r["answer"]), r["cloze"])


def select_questions(table, n: int, shots: int = 0, where: str = "") -> tuple[list[Question], list[Question]]:
    """(evaluated, shots): the bottom ``n`` rows, and the ``shots`` rows just above them."""
    if table.height < n + shots:
        raise ZeroShotError(f"{where}: {table.height} rows, fewer than {n} questions + {shots} shots; "
                            "raise data.pool or lower evaluation.zeroshot.questions")
    rows = list(table.tail(n + shots).iter_rows(named=True))
    qs = [_question(r, where) for r in rows]
    return qs[shots:], qs[:shots]


def paper_shot_prefix(shots: Sequence[Question]) -> str:
    return "".join(q.text + q.labels[q.answer] + PAPER_SHOT_SEP for q in shots)


def cloze_shot_prefix(shots: Sequence[Question]) -> str:
    return "".join(q.cloze + " " + q.choices[q.answer] + CLOZE_SHOT_SEP for q in shots)


# ----------------------------------------------------------------------------- scorers


@torch.no_grad()
def paper_predictions(model: nn.Module, tokenizer, questions: Sequence[Question], prefix_text: str = "",
                      max_batch_tokens: int = 2048, progress: bool = False) -> list[dict]:
    """Per question: label logits and the predicted index (paper's next-token label scorer)."""
    full = [tokenizer(prefix_text + q.text)["input_ids"] for q in questions]
    shared = common_prefix(full)
    prefix = make_prefix(model, shared) if shared else None
    seqs, pre = [], []
    for ids in full:
        p, rest = split_prefix(ids, prefix)
        seqs.append(rest)
        pre.append(p)
    out: list[dict | None] = [None] * len(questions)
    pad = pad_id(tokenizer)
    for group in (False, True):
        idx = [i for i in range(len(questions)) if (pre[i] is not None) == group]
        for batch in tqdm(token_batches([len(seqs[i]) for i in idx], max_batch_tokens), desc="paper scorer",
                          disable=not progress or not idx):
            rows = [idx[j] for j in batch]
            logits = logits_at(model, [seqs[i] for i in rows], [[len(seqs[i]) - 1] for i in rows],
                               pad=pad, prefix=prefix if group else None)
            for i, lg in zip(rows, logits):
                label_ids = [tokenizer(lab)["input_ids"][-1] for lab in questions[i].labels]
                scores = lg[0, label_ids].double().cpu().numpy()
                out[i] = {"label_logits": scores.tolist(), "pred": int(np.argmax(scores))}
    return out


def _encoder(tokenizer):  # the harness' tok_encode: no special tokens, BOS only where the model needs it
    bos = [tokenizer.bos_token_id] if adds_bos(tokenizer) else []
    return lambda s: bos + tokenizer(s, add_special_tokens=False)["input_ids"]


def cloze_pairs(tokenizer, context: str, choices: Sequence[str]) -> tuple[list[int], list[list[int]]]:
    """Context ids and continuation ids per choice, split as lm-evaluation-harness does."""
    enc = _encoder(tokenizer)
    conts = []
    for c in choices:
        ctx, cont = context, " " + c
        n_sp = len(ctx) - len(ctx.rstrip())
        if n_sp:  # the harness moves trailing spaces of the context into the continuation
            ctx, cont = ctx[:-n_sp], ctx[-n_sp:] + cont
        whole, ctx_ids = enc(ctx + cont), enc(ctx)
        conts.append(whole[len(ctx_ids):])
    ctx_ids = enc(context.rstrip())
    if not ctx_ids:
        raise ZeroShotError(f"empty context {context!r} and no BOS token to condition on")
    for c, ids in zip(choices, conts):
        if not ids:
            raise ZeroShotError(f"choice {c!r} tokenises to nothing after context {context[-40:]!r}")
    return ctx_ids, conts


@torch.no_grad()
def continuation_logprobs(model: nn.Module, ctx: Prefix, conts: Sequence[Sequence[int]], pad: int) -> list[float]:
    """Sum of log p(continuation tokens | context), one forward for all continuations."""
    first = torch.log_softmax(ctx.last_logits.double(), dim=-1)
    lps = [float(first[c[0]]) for c in conts]
    longer = [i for i, c in enumerate(conts) if len(c) > 1]
    if longer:
        seqs = [list(conts[i][:-1]) for i in longer]
        logits = logits_at(model, seqs, [list(range(len(s))) for s in seqs], pad=pad, prefix=ctx)
        for i, lg in zip(longer, logits):
            lp = torch.log_softmax(lg.double(), dim=-1)
            target = torch.tensor(conts[i][1:], device=lp.device)
            lps[i] += float(lp.gather(1, target[:, None]).sum())
    return lps


@torch.no_grad()
def cloze_predictions(model: nn.Module, tokenizer, questions: Sequence[Question], prefix_text: str = "",
                      progress: bool = False) -> list[dict]:
    """Per question: summed log-likelihoods and the acc / acc_norm predictions."""
    pairs = [cloze_pairs(tokenizer, prefix_text + q.cloze, q.choices) for q in questions]
    common = common_prefix([ctx for ctx, _ in pairs])
    shared = make_prefix(model, common) if common else None
    pad = pad_id(tokenizer)
    out = []
    for q, (ctx_ids, conts) in tqdm(list(zip(questions, pairs)), desc="cloze scorer", disable=not progress):
        base, rest = split_prefix(ctx_ids, shared)
        ctx = make_prefix(model, rest, base=base)
        lls = np.array(continuation_logprobs(model, ctx, conts, pad))
        nbytes = np.array([len(c.encode("utf-8")) for c in q.choices], dtype=np.float64)
        out.append({"loglik": lls.tolist(), "pred_acc": int(np.argmax(lls)),
                    "pred_acc_norm": int(np.argmax(lls / np.maximum(nbytes, 1)))})
    return out


def evaluate_task(model: nn.Module, tokenizer, questions: Sequence[Question], shots: Sequence[Question] = (),
                  progress: bool = False) -> dict:
    """Accuracies of both scorers on one task, plus per-question predictions."""
    paper = paper_predictions(model, tokenizer, questions, paper_shot_prefix(shots), progress=progress)
    cloze = cloze_predictions(model, tokenizer, questions, cloze_shot_prefix(shots), progress=progress)
    gold = np.array([q.answer for q in questions])
    items = [{"id": q.id, "answer": q.answer, "paper": p["pred"], "acc": c["pred_acc"], "acc_norm": c["pred_acc_norm"]}
             for q, p, c in zip(questions, paper, cloze)]
    return {
        "n": len(questions),
        "shots": len(shots),
        "shot_ids": [s.id for s in shots],
        "paper_acc": float(np.mean(np.array([p["pred"] for p in paper]) == gold)),
        "acc": float(np.mean(np.array([c["pred_acc"] for c in cloze]) == gold)),
        "acc_norm": float(np.mean(np.array([c["pred_acc_norm"] for c in cloze]) == gold)),
        "chance": float(np.mean([1.0 / len(q.choices) for q in questions])),
        "items": items,
    }
