"""Our zero-shot evaluator (``actpat.evaluate.zeroshot``, cloze scorer) against lm-evaluation-harness.

Needs the optional extra (``pip install .[lmeval]``); skipped without it.  For each multiple-choice
format (boolq, siqa, piqa, hellaswag, mmlu) a small domain table is built by our own code
(``build_domain_table`` over hub-format records), scored by ``evaluate_task`` and, through the
harness's own code, by a task defined locally: a YAML file per format in ``tmp_path`` read by
``TaskManager(include_path=...)``, whose docs are the same table rows (written to parquet, loaded by
the harness with ``datasets``), ``doc_to_text: cloze``, ``doc_to_choice: choices``,
``doc_to_target: answer``, target delimiter ``" "``; MMLU's few-shot rows are the harness's
``first_n`` few-shot split with delimiter ``"\\n\\n"`` (our ``cloze_shot_prefix``).  The model is
``HFLM`` on the same saved directory.

Compared per question: the (context, continuation) strings the harness scores, the summed
log-likelihoods, the chosen answer (argmax) and the length-normalised one.  One definition
differs and is compared as such: our ``acc_norm`` divides by the choice's length in UTF-8 bytes,
which is the harness's ``acc_bytes``; the harness's ``acc_norm`` divides by characters, so the
two are compared only on questions whose choices are ASCII (equal lengths there).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lm_eval")

import yaml  # noqa: E402

from helpers import REPO  # noqa: E402
from helpers.reliability import write_jsonl  # noqa: E402
from helpers.tiny import PRUNING_LLAMA, PRUNING_TOKENIZER, tiny_llama, tiny_tokenizer  # noqa: E402

FORMATS = ("boolq", "siqa", "piqa", "hellaswag", "mmlu")
SHIPPED = REPO / "resources" / "models" / "smollm2-135m"

# ----------------------------------------------------------------------------- hub-format records
# A few records per format, in the layout of the hub dataset each template reads (docs/contracts.md).
# Some choices hold non-ASCII characters (’, °, é) so that bytes and characters differ.

_BOOLQ = [
    ("Water boils at 100 degrees Celsius at sea level. At higher altitude it boils at a lower temperature.",
     "does water boil at a lower temperature on a mountain", True),
    ("The Pacific is the largest and deepest of the world's five oceans.", "is the atlantic the largest ocean", False),
    ("Penguins are flightless birds that live almost exclusively in the Southern Hemisphere.",
     "can penguins fly", False),
    ("A leap year has 366 days; February then has 29 days instead of 28.", "does a leap year have 366 days", True),
    ("The Great Wall of China is a series of fortifications built across northern China.",
     "is the great wall of china in japan", False),
    ("Mercury is the closest planet to the Sun and the smallest in the Solar System.",
     "is mercury the closest planet to the sun", True),
    ("Bats are mammals; they are the only mammals capable of true and sustained flight.", "are bats birds", False),
    ("The human heart has four chambers: two atria and two ventricles.", "does the human heart have four chambers",
     True),
]

_SIQA = [
    ("Jordan was hungry after school and made a sandwich.", "Why did Jordan do this?",
     ("to eat something", "to go to sleep", "to paint the house"), "1"),
    ("Casey lent her notes to a classmate who had missed the lecture.", "How would the classmate feel?",
     ("angry at Casey", "grateful to Casey", "bored by the lecture"), "2"),
    ("Riley forgot an umbrella and got soaked on the way to work.", "What will Riley want to do next?",
     ("dry off and change clothes", "buy a sandwich", "go swimming in the lake"), "1"),
    ("Alex practiced the piano every day for a month before the recital.", "How would you describe Alex?",
     ("lazy", "careless about music", "dedicated and hard-working"), "3"),
    ("Sam broke a glass at a friend’s party and apologised.", "What does Sam need to do before this?",
     ("drop the glass", "sing a song", "leave the café"), "1"),
    ("Taylor won the chess tournament after a long final game.", "How would Taylor feel afterwards?",
     ("sad and defeated", "proud and happy", "hungry for soup"), "2"),
    ("Morgan held the door open for an elderly neighbour.", "What will the neighbour want to do next?",
     ("thank Morgan", "close the door on Morgan", "run away"), "1"),
    ("Jesse studied all night for the final exam.", "How would Jesse feel in the morning?",
     ("well rested", "tired", "like running a marathon"), "2"),
]

_PIQA = [
    ("To cool a hot drink quickly,", "add a few ice cubes to it.", "put it in the oven for ten minutes.", 0),
    ("How do you keep bread from going stale?", "Leave it uncovered on the counter.",
     "Store it in a sealed bag or bread box.", 1),
    ("To remove a stripped screw,", "press a rubber band between the screwdriver and the screw head and turn.",
     "pour water on the screw and wait.", 0),
    ("How can you tell if an egg is fresh?", "Paint the shell and wait a week.",
     "Put it in a bowl of water; a fresh egg sinks.", 1),
    ("To heat the oven for a pizza,", "set it to 220 °C and wait until it’s hot.",
     "set it to 20 °C and wait until it’s cold.", 0),
    ("To clean a greasy pan,", "use hot water and dish soap.", "use cold sand and a feather.", 0),
    ("How do you unclog a drain?", "Pour glue down the drain.", "Use a plunger or a drain snake.", 1),
    ("To make a paper airplane fly farther,", "fold the wings evenly and throw it gently upward.",
     "soak it in water before throwing.", 0),
]

_HELLASWAG = [
    ("Making a sandwich", "A man places two slices of bread on a plate.", "he",
     ["spreads peanut butter on one slice.", "throws the plate out of the window.",
      "starts to swim across the kitchen.", "paints the bread blue."], "0"),
    ("Washing dishes", "A woman fills the sink with warm soapy water.", "she",
     ["drives the car to the beach.", "scrubs the plates with a sponge and rinses them.",
      "reads a book about the moon.", "plants a tree in the sink."], "1"),
    ("Home and Garden", "[header] How to water a houseplant [title] Check the soil first.", "[step]",
     ["Push a finger into the soil; water only when the top inch is dry.",
      "[title] Paint the leaves green every morning.", "Play loud music to the plant at night.",
      "Bury the plant in sand."], "0"),
    ("Playing guitar", "A boy sits on a chair holding a guitar.", "he",
     ["eats the guitar strings.", "flies out of the room.", "strums the strings and begins to sing.",
      "folds the guitar in half."], "2"),
    ("Baking cookies", "A girl mixes flour, sugar and butter in a bowl.", "she",
     ["throws the bowl at the wall.", "puts the bowl in the freezer for a year.",
      "rolls the dough into balls and places them on a baking tray.", "pours the dough into her shoes."], "2"),
    ("Running a marathon", "Runners line up at the starting line on a cold morning.", "the runners",
     ["sit down and eat breakfast.", "go home.", "swim across a river.",
      "start running when the gun fires at 8 °C."], "3"),
    ("Brushing teeth", "A child squeezes toothpaste onto a brush.", "the child",
     ["brushes his teeth in small circles.", "puts the brush in the oven.",
      "uses the brush to paint a wall.", "throws the toothpaste away."], "0"),
    ("Walking the dog", "A woman clips a leash to her dog's collar.", "she",
     ["takes the dog out for a walk around the block.", "puts the dog in the washing machine.",
      "teaches the dog to drive.", "sends the dog to school."], "0"),
]

_MMLU = [
    ("high_school_geography", "What is the capital of France?", ["Berlin", "Madrid", "Paris", "Rome"], 2),
    ("elementary_mathematics", "What is 7 multiplied by 8?", ["54", "56", "58", "64"], 1),
    ("astronomy", "Which planet is known as the Red Planet?", ["Venus", "Jupiter", "Saturn", "Mars"], 3),
    ("high_school_chemistry", "What is the chemical symbol for gold?", ["Au", "Ag", "Gd", "Go"], 0),
    ("high_school_biology", "Which organelle is the site of photosynthesis?",
     ["mitochondrion", "chloroplast", "nucleus", "ribosome"], 1),
    ("high_school_physics", "Water freezes at what temperature at sea level?",
     ["0 °C", "10 °C", "50 °C", "100 °C"], 0),
    ("elementary_mathematics", "What is the square root of 81?", ["7", "8", "9", "10"], 2),
    ("world_religions", "In which city is the Kaaba located?", ["Medina", "Mecca", "Jerusalem", "Cairo"], 1),
    ("high_school_us_history", "Who was the first president of the United States?",
     ["Abraham Lincoln", "Thomas Jefferson", "John Adams", "George Washington"], 3),
    ("computer_security", "Which of these is a strong password?",
     ["password", "123456", "T7#qL9!vR2", "qwerty"], 2),
    ("nutrition", "Which vitamin does the skin make in sunlight?", ["vitamin A", "vitamin C", "vitamin D",
                                                                     "vitamin K"], 2),
    ("philosophy", "Who wrote ‘The Republic’?", ["Aristotle", "Plato", "Kant", "Descartes"], 1),
]


def hub_records(fmt: str) -> list[dict]:
    if fmt == "boolq":
        return [{"id": f"b{i}", "passage": p, "question": q, "answer": a} for i, (p, q, a) in enumerate(_BOOLQ)]
    if fmt == "siqa":
        return [{"id": f"s{i}", "context": c, "question": q, "answerA": a, "answerB": b, "answerC": d, "label": lab}
                for i, (c, q, (a, b, d), lab) in enumerate(_SIQA)]
    if fmt == "piqa":
        return [{"id": f"p{i}", "goal": g, "sol1": s1, "sol2": s2, "label": lab}
                for i, (g, s1, s2, lab) in enumerate(_PIQA)]
    if fmt == "hellaswag":
        return [{"id": f"h{i}", "activity_label": al, "ctx_a": a, "ctx_b": b, "ctx": f"{a} {b}", "endings": e,
                 "label": lab} for i, (al, a, b, e, lab) in enumerate(_HELLASWAG)]
    if fmt == "mmlu":
        return [{"id": f"m{i}", "subject": s, "question": q, "choices": c, "answer": a}
                for i, (s, q, c, a) in enumerate(_MMLU)]
    raise ValueError(fmt)


def domain_tables(work: Path) -> dict:
    """{format: table} built by our own code (templates + build_domain_table) from the records above."""
    from actpat.data.tables import build_domain_table

    out = {}
    for fmt in FORMATS:
        path = write_jsonl(work / "records" / f"{fmt}.jsonl", hub_records(fmt))
        out[fmt], _ = build_domain_table(fmt, {"source": "local", "path": str(path), "format": fmt}, {"pool": None})
    return out


# --------------------------------------------------------------------------- the harness's side


def write_harness_task(work: Path, fmt: str, table, n: int, shots: int) -> str:
    """A local lm-eval task over the table's evaluation rows (bottom ``n``) and shot rows (just above)."""
    name = f"actpat_{fmt}"
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    rows = table.tail(n + shots)
    files = {"test": str(data / f"{fmt}.test.parquet")}
    rows.tail(n).write_parquet(files["test"])
    cfg = {
        "task": name,
        "dataset_path": "parquet",
        "dataset_kwargs": {"data_files": files, "cache_dir": str(work / "hf-datasets")},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "cloze",
        "doc_to_choice": "choices",
        "doc_to_target": "answer",
        "target_delimiter": " ",
        "fewshot_delimiter": "\n\n",
        "num_fewshot": shots,
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                        for m in ("acc", "acc_norm", "acc_bytes")],
        "metadata": {"version": 1.0},
    }
    if shots:
        files["train"] = str(data / f"{fmt}.shots.parquet")
        rows.head(shots).write_parquet(files["train"])
        cfg["fewshot_split"] = "train"
        cfg["fewshot_config"] = {"sampler": "first_n"}
    tasks = work / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return name


def harness_lm(model_dir: Path, batch_size: int = 4):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(model_dir), batch_size=batch_size, device="cpu", dtype="float32")


def harness_scores(lm, work: Path, tables: dict, n: int, shots: dict[str, int]) -> dict:
    """{format: {"results": aggregate metrics, "samples": per-question records in table order}}."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    names = {fmt: write_harness_task(work, fmt, tables[fmt], n, shots.get(fmt, 0)) for fmt in tables}
    tm = TaskManager(include_path=str(work / "tasks"), include_defaults=False)
    out = lm_eval.simple_evaluate(model=lm, tasks=list(names.values()), task_manager=tm, log_samples=True,
                                  bootstrap_iters=0, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                                  fewshot_random_seed=0)
    res = {}
    for fmt, name in names.items():
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        res[fmt] = {"results": out["results"][name], "samples": samples}
    return res


def sample_logliks(sample: dict) -> np.ndarray:
    return np.array([float(r[0]) for r in sample["filtered_resps"]], dtype=np.float64)


# ------------------------------------------------------------------------------- our side


def our_scores(model, tokenizer, tables: dict, n: int, shots: dict[str, int]) -> dict:
    from actpat.evaluate.zeroshot import cloze_predictions, cloze_shot_prefix, evaluate_task, select_questions

    out = {}
    for fmt, table in tables.items():
        qs, shot_rows = select_questions(table, n, shots.get(fmt, 0), where=fmt)
        prefix = cloze_shot_prefix(shot_rows)
        res = evaluate_task(model, tokenizer, qs, shot_rows)
        out[fmt] = {"questions": qs, "prefix": prefix, "result": res,
                    "cloze": cloze_predictions(model, tokenizer, qs, prefix)}
    return out


def compare(ours: dict, theirs: dict, ll_atol: float) -> dict:
    """Per-format agreement; raises AssertionError on any per-question mismatch."""
    report = {}
    for fmt, o in ours.items():
        qs, samples, cloze = o["questions"], theirs[fmt]["samples"], o["cloze"]
        assert len(samples) == len(qs), fmt
        raw = norm = norm_ascii = n_ascii = 0
        for q, s, c in zip(qs, samples, cloze):
            where = f"{fmt} {q.id}"
            assert s["doc"]["id"] == q.id, where
            # the strings the harness scores are ours: context = shot prefix + cloze, continuation " " + choice
            args = [tuple(a) for a in s["arguments"]]
            assert args == [(o["prefix"] + q.cloze, " " + ch) for ch in q.choices], where
            lls, ours_ll = sample_logliks(s), np.array(c["loglik"])
            np.testing.assert_allclose(ours_ll, lls, atol=ll_atol, rtol=1e-4, err_msg=where)
            top2 = np.sort(lls)[-2:]
            if top2[1] - top2[0] > 2 * ll_atol:  # not a tie within float noise
                assert c["pred_acc"] == int(np.argmax(lls)), where
            raw += c["pred_acc"] == int(np.argmax(lls))
            nbytes = np.array([len(ch.encode("utf-8")) for ch in q.choices], dtype=np.float64)
            pred_bytes = int(np.argmax(lls / nbytes))
            assert s["acc_bytes"] == float(pred_bytes == q.answer), where  # the harness's own metric, same rule
            assert c["pred_acc_norm"] == pred_bytes, where
            norm += c["pred_acc_norm"] == pred_bytes
            if all(ch.isascii() for ch in q.choices):
                n_ascii += 1
                pred_chars = int(np.argmax(lls / np.array([len(ch) for ch in q.choices], dtype=np.float64)))
                assert s["acc_norm"] == float(pred_chars == q.answer), where
                assert c["pred_acc_norm"] == pred_chars, where
                norm_ascii += c["pred_acc_norm"] == pred_chars
        r, res = theirs[fmt]["results"], o["result"]
        report[fmt] = {
            "questions": len(qs), "agree_acc": raw / len(qs), "agree_acc_norm": norm / len(qs),
            "ascii_questions": n_ascii, "agree_acc_norm_ascii": norm_ascii / max(n_ascii, 1),
            "ours": {"acc": res["acc"], "acc_norm": res["acc_norm"]},
            "harness": {"acc": r["acc,none"], "acc_norm": r["acc_norm,none"], "acc_bytes": r["acc_bytes,none"]},
        }
        assert abs(res["acc"] - r["acc,none"]) <= 0.005, report[fmt]
        assert abs(res["acc_norm"] - r["acc_bytes,none"]) <= 0.005, report[fmt]
        ascii_idx = [i for i, q in enumerate(qs) if all(ch.isascii() for ch in q.choices)]
        ours_ascii = np.mean([res["items"][i]["acc_norm"] == qs[i].answer for i in ascii_idx])
        theirs_ascii = np.mean([samples[i]["acc_norm"] for i in ascii_idx])
        assert abs(ours_ascii - theirs_ascii) <= 0.005, report[fmt]
    return report


# ---------------------------------------------------------------------------------------- tests


def _check(model_dir: Path, model, tokenizer, work: Path, n: int, shots: dict, ll_atol: float):
    tables = domain_tables(work)
    ours = our_scores(model, tokenizer, tables, n, shots)
    theirs = harness_scores(harness_lm(model_dir), work, tables, n, shots)
    report = compare(ours, theirs, ll_atol)
    print(json.dumps(report, indent=1))
    for fmt in FORMATS:  # the comparison is not vacuous: the model's choices are not all ties
        lls = [c["loglik"] for c in ours[fmt]["cloze"]]
        assert len({round(v, 3) for row in lls for v in row}) > len(lls), fmt
    return report


@pytest.mark.parametrize("bos", [True, False])
def test_lm_eval_agrees_on_a_tiny_model(tmp_path, bos):
    """A tiny random LLaMA whose logits differ visibly between tokens, with and without a BOS token;
    every format, MMLU with 2 shots."""
    tok = tiny_tokenizer(**PRUNING_TOKENIZER, bos=bos)
    model = tiny_llama(vocab=len(tok), **PRUNING_LLAMA)
    model.config.max_position_embeddings = 4096  # no truncation by the harness (RoPE does not depend on it)
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    _check(tmp_path / "model", model, tok, tmp_path, n=6, shots={"mmlu": 2}, ll_atol=1e-3)


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(),
                    reason=f"not built: {SHIPPED.relative_to(REPO)} (snakemake {SHIPPED.relative_to(REPO)})")
def test_lm_eval_agrees_on_the_shipped_model(tmp_path):
    """SmolLM2-135M as the workflow loads it; every format, MMLU with the default 5 shots."""
    from actpat.modelio import load_model

    model, tok = load_model(str(SHIPPED))
    _check(SHIPPED, model, tok, tmp_path, n=7, shots={"mmlu": 5}, ll_atol=2e-3)
