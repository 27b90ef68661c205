"""Prompt templates of the paper (paper.md §5.3), applied to records in the hub datasets' formats.

Every template turns one record into the table fields of docs/contracts.md:

* ``text``    the exact string that is scored (the paper's prompt, literal strings);
* ``choices`` the answer texts (multiple-choice formats);
* ``labels``  the answer-label strings the paper's next-token scorer compares (``A B C D``,
  ``no yes``, ``0 1``): the scorer reads the logit of the last token of each label;
* ``answer``  the index of the gold choice;
* ``cloze``   the lm-evaluation-harness context: a choice is scored as ``cloze + " " + choice``
  (BoolQ: super_glue/boolq/default.yaml; MMLU: mmlu/continuation; SIQA: siqa/siqa.yaml;
  PIQA: piqa/piqa.yaml; HellaSwag: hellaswag/utils.py).

Records come in the format of the hub dataset named in ``HUB_FORMATS``; the offline readers
in ``actpat.data.sources`` convert their sources into these formats first, so one template
serves both.  Documented generalisations (for local files that lack a column or have more
choices, never needed by the hub formats):

* BoolQ with an empty ``passage`` leaves out the passage line (``Question: ...?\\nAnswer:``);
* SIQA with an empty ``question`` leaves out the question line (for sources that merge context
  and question into one string, kept as the context);
* PIQA takes any number of solutions ``sol1, sol2, sol3, ...`` numbered ``0. 1. 2. ...``;
* GSM8K exemplars are drawn from the source itself (the 8 standard CoT exemplars of Wei et al.
  are not available offline); see ``gsm8k_exemplar``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

FORMATS = ("boolq", "mmlu", "siqa", "piqa", "hellaswag", "humaneval", "gsm8k", "text")
MC_FORMATS = ("boolq", "mmlu", "siqa", "piqa", "hellaswag")

# Columns each format needs, and the hub dataset whose layout they follow (for error messages).
REQUIRED = {
    "boolq": ("passage", "question", "answer"),
    "mmlu": ("question", "subject", "choices", "answer"),
    "siqa": ("context", "question", "answerA", "answerB", "answerC", "label"),
    "piqa": ("goal", "sol1", "sol2", "label"),
    "hellaswag": ("activity_label", "ctx", "endings", "label"),
    "humaneval": ("task_id", "prompt"),
    "gsm8k": ("question", "answer"),
    "text": ("text",),
}
HUB_FORMATS = {
    "boolq": "boolq (google/boolq): passage, question, answer (bool)",
    "mmlu": "cais/mmlu: question, subject, choices (4 strings), answer (0-3)",
    "siqa": "social_i_qa: context, question, answerA, answerB, answerC, label ('1'-'3')",
    "piqa": "piqa: goal, sol1, sol2, label (0/1)",
    "hellaswag": "hellaswag: activity_label, ctx (or ctx_a + ctx_b), endings (4 strings), label ('0'-'3')",
    "humaneval": "openai_humaneval: task_id, prompt",
    "gsm8k": "gsm8k (main): question, answer ('<reasoning> #### <number>')",
    "text": "raw text (allenai/c4, wikitext): text",
}
LETTERS = "ABCDEFGHIJ"


class TemplateError(ValueError):
    """A record that a template cannot render; the caller adds the row's provenance."""


def expected_format(fmt: str) -> str:
    return HUB_FORMATS[fmt]


# Text columns that may be empty: the documented generalisations above.
MAY_BE_EMPTY = {("boolq", "passage"), ("siqa", "question")}


def check_fields(fmt: str, rec: dict) -> None:
    """Raise naming the first missing (or empty) column and the hub format the record should follow."""
    for col in REQUIRED[fmt]:
        if col not in rec or rec[col] is None:
            raise TemplateError(f"missing column {col!r}; format {fmt!r} expects {HUB_FORMATS[fmt]}")
        v = rec[col]
        if isinstance(v, str) and not v.strip() and (fmt, col) not in MAY_BE_EMPTY and col not in ("label", "answer"):
            raise TemplateError(f"column {col!r} is empty or whitespace-only text")


# ----------------------------------------------------------------------- coercions
# Local CSV files carry everything as strings, so labels and lists are parsed leniently
# here, and anything unparseable is an error (never a silent default).


def _as_list(value: Any, col: str) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)  # CSV cells hold lists as JSON, e.g. ["a", "b"]
        except json.JSONDecodeError:
            raise TemplateError(f"column {col!r}: expected a list of strings, got {value[:60]!r}") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TemplateError(f"column {col!r}: expected a list of strings, got {value!r:.80}")
    return list(value)


def _as_index(value: Any, col: str, n: int, *, offset: int = 0, letters: bool = False) -> int:
    """Gold index in [0, n): ints, digit strings, or (letters=True) 'A'..; ``offset`` is subtracted."""
    idx = None
    if isinstance(value, bool):
        idx = None
    elif isinstance(value, int):
        idx = value - offset
    elif isinstance(value, float) and value.is_integer():
        idx = int(value) - offset
    elif isinstance(value, str):
        v = value.strip()
        if re.fullmatch(r"-?\d+", v):
            idx = int(v) - offset
        elif letters and len(v) == 1 and v.upper() in LETTERS[:n]:
            idx = LETTERS.index(v.upper())
    if idx is None or not 0 <= idx < n:
        raise TemplateError(f"answer not among the choices: column {col!r} = {value!r} does not pick one of "
                            f"{n} choices" + (f" (expected {offset}..{n - 1 + offset})" if not letters else ""))
    return idx


def _as_bool(value: Any, col: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise TemplateError(f"answer not among the choices: column {col!r} = {value!r} is not a yes/no answer "
                        "(true/false, yes/no, 1/0)")


def _row(text, choices=None, labels=None, answer=None, cloze=None) -> dict:
    return {"text": text, "choices": choices, "labels": labels, "answer": answer, "cloze": cloze}


# ------------------------------------------------------------------------ templates


def boolq(rec: dict) -> dict:
    """``{passage}\\nQuestion: {question}?\\nAnswer:``; labels and choices ``no``/``yes``."""
    check_fields("boolq", rec)
    passage, question = str(rec["passage"]), str(rec["question"])
    body = f"Question: {question}?\nAnswer:"
    text = f"{passage}\n{body}" if passage.strip() else body
    return _row(text, ["no", "yes"], ["no", "yes"], int(_as_bool(rec["answer"], "answer")), text)


def format_subject(subject: str) -> str:
    """cais/mmlu subjects are snake_case (``abstract_algebra``); prompts use spaces."""
    return subject.replace("_", " ").strip()


def mmlu(rec: dict) -> dict:
    """The paper's MMLU prompt; cloze follows lm-eval's ``mmlu_*_continuation`` (description + Question/Answer)."""
    check_fields("mmlu", rec)
    choices = _as_list(rec["choices"], "choices")
    if len(choices) != 4:
        raise TemplateError(f"column 'choices': MMLU needs 4 choices, got {len(choices)}")
    subject = format_subject(str(rec["subject"]))
    question = str(rec["question"])
    opts = "".join(f"{LETTERS[i]}. {c}\n" for i, c in enumerate(choices))
    text = (f"The following are multiple choice questions (with answers) about {subject}.\n\n"
            f"{question}\n{opts}Answer:")
    cloze = (f"The following are questions (with answers) about {subject}.\n\n"
             f"Question: {question.strip()}\nAnswer:")
    answer = _as_index(rec["answer"], "answer", 4, letters=True)
    return _row(text, choices, list(LETTERS[:4]), answer, cloze)


def siqa(rec: dict) -> dict:
    """The paper's SIQA prompt (label '1'..'3' -> A..C); cloze is lm-eval's ``Q: {context} {question}\\nA:``."""
    check_fields("siqa", rec)
    context, question = str(rec["context"]), str(rec["question"])
    choices = [str(rec["answerA"]), str(rec["answerB"]), str(rec["answerC"])]
    head = f"{context}\n{question}\n" if question.strip() else f"{context}\n"
    opts = "".join(f"{LETTERS[i]}. {c}\n" for i, c in enumerate(choices))
    text = ("The following are multiple choice questions (with answers) about social interaction.\n"
            f"{head}{opts}Answer:")
    cloze = f"Q: {context} {question}\nA:" if question.strip() else f"Q: {context}\nA:"
    answer = _as_index(rec["label"], "label", 3, offset=1)
    return _row(text, choices, list(LETTERS[:3]), answer, cloze)


def piqa(rec: dict) -> dict:
    """``Question:{goal}\\n0. {sol1}\\n1. {sol2}\\nAnswer:`` (generalised to sol3, sol4, ...)."""
    check_fields("piqa", rec)
    choices = []
    i = 1
    while rec.get(f"sol{i}") not in (None, ""):  # CSV leaves unused sol columns empty
        choices.append(str(rec[f"sol{i}"]))
        i += 1
    goal = str(rec["goal"])
    opts = "".join(f"{i}. {c}\n" for i, c in enumerate(choices))
    text = f"Question:{goal}\n{opts}Answer:"
    cloze = f"Question: {goal}\nAnswer:"
    answer = _as_index(rec["label"], "label", len(choices))
    return _row(text, choices, [str(i) for i in range(len(choices))], answer, cloze)


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's HellaSwag clean-up (WikiHow ``[title]``/``[step]`` artefacts, double spaces)."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def hellaswag(rec: dict) -> dict:
    """The paper's HellaSwag prompt (raw endings); cloze/choices follow lm-eval (preprocessed)."""
    check_fields("hellaswag", rec)
    endings = _as_list(rec["endings"], "endings")
    if len(endings) != 4:
        raise TemplateError(f"column 'endings': HellaSwag needs 4 endings, got {len(endings)}")
    label, ctx = str(rec["activity_label"]), str(rec["ctx"])
    opts = "".join(f"{LETTERS[i]}. {e}\n\n" for i, e in enumerate(endings))
    text = (f"The following are multiple choice to finish a sentence (with answer) about {label}.\n\n"
            f"{ctx}...\nHow does the description likely end?\n\n{opts}Answer:")
    if rec.get("ctx_a") is not None and rec.get("ctx_b") is not None:
        lm_ctx = str(rec["ctx_a"]) + " " + str(rec["ctx_b"]).capitalize()
    else:
        lm_ctx = ctx
    cloze = hellaswag_preprocess(label + ": " + lm_ctx)
    answer = _as_index(rec["label"], "label", 4)
    return _row(text, [hellaswag_preprocess(e) for e in endings], list(LETTERS[:4]), answer, cloze)


def humaneval(rec: dict) -> dict:
    """The raw ``prompt`` (function signature and docstring), as the paper."""
    check_fields("humaneval", rec)
    return _row(str(rec["prompt"]))


_CALC = re.compile(r"<<[^>]*>>")  # GSM8K calculator annotations, e.g. <<48/2=24>>


def gsm8k_split(answer: str) -> tuple[str, str]:
    """Split a GSM8K answer ``'<reasoning>\\n#### 72'`` into (chain, final answer)."""
    if "####" not in answer:
        raise TemplateError("column 'answer': expected '<reasoning> #### <final answer>' (GSM8K format)")
    chain, final = answer.rsplit("####", 1)
    chain = " ".join(line.strip() for line in _CALC.sub("", chain).splitlines() if line.strip())
    final = final.strip()
    if not final:
        raise TemplateError("column 'answer': empty final answer after '####'")
    return chain, final


def gsm8k_exemplar(rec: dict) -> str:
    """One few-shot exemplar in the paper's format: ``Q: …\\nA: {chain} The answer is X.\\n\\n``."""
    check_fields("gsm8k", rec)
    chain, final = gsm8k_split(str(rec["answer"]))
    chain = f"{chain} " if chain else ""
    return f"Q: {rec['question']}\nA: {chain}The answer is {final}.\n\n"


def gsm8k(rec: dict, exemplars: Sequence[dict] = ()) -> dict:
    """``{exemplars}Q: {question}\\nA: `` (note the final space).  The gold final answer is kept
    as the single choice (``choices=[X]``, ``answer=0``) so that it travels with the row."""
    check_fields("gsm8k", rec)
    _, final = gsm8k_split(str(rec["answer"]))
    text = "".join(gsm8k_exemplar(e) for e in exemplars) + f"Q: {rec['question']}\nA: "
    return _row(text, [final], None, 0, None)


def text(rec: dict) -> dict:
    """A raw text window (C4/WikiText); nothing else."""
    check_fields("text", rec)
    return _row(str(rec["text"]))


TEMPLATES = {
    "boolq": boolq, "mmlu": mmlu, "siqa": siqa, "piqa": piqa, "hellaswag": hellaswag,
    "humaneval": humaneval, "gsm8k": gsm8k, "text": text,
}


def render(fmt: str, rec: dict, **kw) -> dict:
    """Apply format ``fmt``'s template to ``rec``; raises TemplateError naming the column."""
    if fmt not in TEMPLATES:
        raise TemplateError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return TEMPLATES[fmt](rec, **kw)
