"""The paper's three findings as measured quantities, each with a verdict.

Every check is a small pure function over per-layer numbers, used both for our tables
and for the paper's printed numbers (``paper_values``), so the two columns of the
findings table are computed the same way.  Layer windows are 0-indexed and inclusive:

* F1 windows: ``first`` = layer 0 (the paper's layer 1), ``mid`` = 2 .. L/2-1 (the
  paper's 1-indexed "layers 3-17" for 32 layers: 3 .. L/2), ``deep half`` = L/2 .. L-1.
* F2/F3 windows: ``shallow`` and ``deep`` as configured (``similarity.shallow_window``,
  ``similarity.deep_window``; defaults ``actpat.config.paper_shallow_window`` /
  ``paper_deep_window``).

Verdicts: ``holds`` / ``does not hold`` / ``not measured`` (inputs missing or degenerate,
with the reason).  The rules (all strict inequalities):

* F1 (per domain, on the fraction of weights above the primary γ and, threshold-free,
  on the share of the model-wide top-k% activations): mid > deep half and mid > first.
  Holds when it holds for every domain.  Not measured when γ marks no weight or every
  weight in every layer of a domain.
* F1b (paper Fig. 2): the top-k% share of the deep half is larger for general text
  domains (``format: text``) than for domain tasks (means over domains).
* F2: the mean over cross-domain pairs of the shallow-window mean LLMDcos exceeds that
  of the deep window.
* F2b: layer 2 (0-indexed 1) is "high for every pair": for every cross-domain pair its
  mean LLMDcos exceeds the pair's deep-window mean.
* F2c: the shallow-to-deep drop is larger for cross-domain than for within-domain pairs
  ("for the same source all layers are similar").
* F3: Spearman's rho between deep-window LLMDcos and embedding similarity over the
  off-diagonal domain pairs is positive with p < alpha, and larger than the shallow
  window's rho.
* F3b: in the deep-window matrix the mean diagonal cell exceeds the mean off-diagonal cell.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import polars as pl

from ..config import paper_deep_window, paper_shallow_window
from . import paper_values as pv
from .relevance import relevance_correlations

HOLDS, FAILS, UNMEASURED = "holds", "does not hold", "not measured"


def verdict(ok: bool | None) -> str:
    return UNMEASURED if ok is None else (HOLDS if ok else FAILS)


def f1_windows(n_layers: int) -> dict[str, tuple[int, int]]:
    if n_layers < 6:
        raise ValueError(f"Finding 1 needs at least 6 layers (first, mid 2..L/2-1, deep half); got {n_layers}")
    half = n_layers // 2
    return {"first": (0, 0), "mid": (2, half - 1), "deep_half": (half, n_layers - 1)}


def _wmean(values: Sequence[float], win: tuple[int, int]) -> float:
    v = np.asarray(values, np.float64)[win[0]:win[1] + 1]
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def f1_profile(per_layer: Sequence[float]) -> dict:
    """first / mid / deep-half means of one per-layer profile, and whether F1's shape holds."""
    w = f1_windows(len(per_layer))
    m = {k: _wmean(per_layer, win) for k, win in w.items()}
    m["holds"] = bool(m["mid"] > m["deep_half"] and m["mid"] > m["first"])
    return m


def f2_profile(per_layer: Sequence[float], shallow: tuple[int, int], deep: tuple[int, int]) -> dict:
    """Shallow/deep window means, their drop, and layer 2 (0-indexed 1) of one pair's per-layer means."""
    s, d = _wmean(per_layer, shallow), _wmean(per_layer, deep)
    layer2 = float(per_layer[1]) if len(per_layer) > 1 else float("nan")
    return {"shallow": s, "deep": d, "drop": s - d, "layer2": layer2}


def matrix_contrast(cells: pl.DataFrame, value: str = "llmdcos") -> dict:
    """Mean diagonal vs mean off-diagonal (unordered) cell, and how many rows peak on the diagonal."""
    diag = cells.filter(pl.col("domain_a") == pl.col("domain_b"))
    off = cells.filter(pl.col("domain_a") < pl.col("domain_b"))
    full = cells.drop_nulls(value)
    peaks = 0
    domains = sorted(set(full["domain_a"].to_list()))
    for d in domains:
        row = full.filter(pl.col("domain_a") == d)
        own = row.filter(pl.col("domain_b") == d)[value]
        if own.len() and own[0] >= row[value].max():
            peaks += 1
    dm, om = diag[value].drop_nulls().mean(), off[value].drop_nulls().mean()
    return {"diagonal": dm, "off_diagonal": om,
            "contrast": None if dm is None or om is None else dm - om,
            "rows_peaking_on_diagonal": peaks, "n_domains": len(domains)}


def paper_fig6_cells() -> pl.DataFrame:
    rows = [{"domain_a": a, "domain_b": b, "llmdcos": pv.FIG6[i][j]}
            for i, a in enumerate(pv.FIG6_DOMAINS) for j, b in enumerate(pv.FIG6_DOMAINS)]
    return pl.DataFrame(rows)


# ----------------------------------------------------------------------------- the findings


def _mean(xs: Iterable[float]) -> float | None:
    v = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(x)
    ax = abs(x)
    return f"{x:.{digits}g}" if (ax and (ax < 1e-3 or ax >= 1e4)) else f"{x:.{digits}f}"


def _profiles(density: pl.DataFrame, measure: str, param: float | None) -> dict[str, np.ndarray]:
    sub = density.filter(pl.col("measure") == measure)
    if param is not None:
        sub = sub.filter((pl.col("param") - param).abs() <= 1e-12 * max(1.0, abs(param)))
    out = {}
    for (domain,), g in sub.sort("layer").group_by("domain", maintain_order=True):
        out[domain] = g["value"].to_numpy()
    return out


def finding1(density: pl.DataFrame, threshold: float, top_k_percent: float | None = None) -> list[dict]:
    L = int(density["layer"].max()) + 1
    win = f1_windows(L)
    paper = f1_profile([c / pv.LLAMA2_7B_WEIGHTS_PER_LAYER for c in pv.C4_COUNTS])
    results = []
    variants = [("F1", "above_threshold", threshold, f"fraction of weights with Ā > γ = {threshold:g}")]
    if top_k_percent is None:
        tk = density.filter(pl.col("measure") == "top_k_share")["param"]
        top_k_percent = float(tk[0]) if tk.len() else None
    if top_k_percent is not None:
        variants.append(("F1 (top-k)", "top_k_share", top_k_percent,
                         f"share of the model-wide top {top_k_percent:g}% activations"))
    for fid, measure, param, what in variants:
        profiles = _profiles(density, measure, param)
        per_domain, degenerate = {}, []
        for d, v in profiles.items():
            if measure == "above_threshold" and (np.all(v == 0) or np.all(v == 1)):
                degenerate.append(d)
                continue
            per_domain[d] = f1_profile(v)
        n_ok = sum(p["holds"] for p in per_domain.values())
        ok = None if not per_domain or degenerate else n_ok == len(per_domain)
        ours = {"first": _mean(p["first"] for p in per_domain.values()),
                "mid": _mean(p["mid"] for p in per_domain.values()),
                "deep_half": _mean(p["deep_half"] for p in per_domain.values()),
                "domains_holding": n_ok, "domains": len(per_domain), "per_domain": per_domain}
        if degenerate:
            reason = (f"γ = {param:g} marks no weight or every weight in every layer of "
                      f"{', '.join(degenerate)}; choose a threshold inside the activation range")
        elif not per_domain:
            reason = f"no {measure} rows in the density table"
        else:
            reason = None
        detail = (f"mean over domains: mid layers {_fmt(ours['mid'])} vs deep half {_fmt(ours['deep_half'])} "
                  f"vs layer 1 {_fmt(ours['first'])}; shape holds in {n_ok}/{len(per_domain)} domains")
        results.append({
            "id": fid,
            "claim": "Many parameters are activated in shallow layers (except layer 1); fewer in deep layers "
                     "and in layer 1.",
            "measure": f"{what}: mean of 1-indexed layers 3..{L // 2} ('mid') vs {L // 2 + 1}..{L} ('deep half') "
                       "vs layer 1",
            "windows": {k: list(v) for k, v in win.items()},
            "ours": ours,
            "paper": ({"first": paper["first"], "mid": paper["mid"], "deep_half": paper["deep_half"]}
                      if measure == "above_threshold" else None),
            "paper_source": pv.C4_COUNTS_SOURCE + ", counts / 202,375,168 weights per layer"
            if measure == "above_threshold" else None,
            "paper_verdict": verdict(paper["holds"]) if measure == "above_threshold" else None,
            "holds": ok, "verdict": verdict(ok), "reason": reason, "detail": reason or detail,
        })
    return results


def finding1b(density: pl.DataFrame, text_domains: Sequence[str]) -> dict:
    L = int(density["layer"].max()) + 1
    half = L // 2
    prof = _profiles(density, "top_k_share", None)
    deep = {d: float(v[half:].sum()) for d, v in prof.items()}
    text = [deep[d] for d in deep if d in set(text_domains)]
    task = [deep[d] for d in deep if d not in set(text_domains)]
    ok = None if not text or not task else bool(np.mean(text) > np.mean(task))
    reason = None if ok is not None else "needs top-k shares of at least one text domain and one task domain"
    ours = {"text_deep_share": _mean(text), "task_deep_share": _mean(task), "per_domain": deep}
    return {
        "id": "F1b",
        "claim": "General corpora (C4, WikiText2) keep more activation in deep layers than domain tasks (Fig. 2).",
        "measure": f"share of the model-wide top-k% activations in the deep half (layers {half + 1}..{L}), "
                   "mean over text domains vs task domains",
        "ours": ours, "paper": None, "paper_source": "figure only (no numbers printed)", "paper_verdict": None,
        "holds": ok, "verdict": verdict(ok), "reason": reason,
        "detail": reason or (f"text domains {_fmt(ours['text_deep_share'])} vs task domains "
                             f"{_fmt(ours['task_deep_share'])}"),
    }


def _pair_profiles(similarity: pl.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    L = int(similarity["layer"].max()) + 1
    out = {}
    for (a, b), g in similarity.group_by("domain_a", "domain_b", maintain_order=True):
        v = np.full(L, np.nan)
        v[g["layer"].to_numpy()] = g["mean"].to_numpy()
        out[(a, b)] = v
    return out


def finding2(similarity: pl.DataFrame, shallow: tuple[int, int], deep: tuple[int, int]) -> list[dict]:
    prof = _pair_profiles(similarity)
    cross = {k: f2_profile(v, shallow, deep) for k, v in prof.items() if k[0] != k[1]}
    within = {k: f2_profile(v, shallow, deep) for k, v in prof.items() if k[0] == k[1]}
    # The paper's lists are read at the paper's own windows for its 32 layers.
    pw = {"shallow": paper_shallow_window(pv.PAPER_LAYERS), "deep": paper_deep_window(pv.PAPER_LAYERS)}
    pcross = {k: f2_profile(v, pw["shallow"], pw["deep"]) for k, v in pv.LLMDCOS_GRADW.items() if k[0] != k[1]}
    pwithin = {k: f2_profile(v, pw["shallow"], pw["deep"]) for k, v in pv.LLMDCOS_GRADW.items() if k[0] == k[1]}
    key = lambda k: f"{k[0]}–{k[1]}"  # noqa: E731

    s, d = _mean(p["shallow"] for p in cross.values()), _mean(p["deep"] for p in cross.values())
    ok = None if s is None or d is None else s > d
    ps, pd_ = _mean(p["shallow"] for p in pcross.values()), _mean(p["deep"] for p in pcross.values())
    f2 = {
        "id": "F2",
        "claim": "For inputs from different domains LLMDcos is high in the shallow layers (first 12 of 32) and "
                 "drops in deep layers.",
        "measure": f"mean LLMDcos of cross-domain pairs, shallow window (0-indexed {shallow[0]}..{shallow[1]}) "
                   f"vs deep window ({deep[0]}..{deep[1]}); mean over domain pairs",
        "ours": {"shallow": s, "deep": d, "pairs": len(cross),
                 "per_pair": {key(k): v for k, v in cross.items()}},
        "paper": {"shallow": ps, "deep": pd_, "pairs": len(pcross)},
        "paper_source": pv.LLMDCOS_SOURCE + f"; 0-indexed windows {pw['shallow'][0]}..{pw['shallow'][1]} and {pw['deep'][0]}..{pw['deep'][1]} of 32",
        "paper_verdict": verdict(ps > pd_),
        "holds": ok, "verdict": verdict(ok),
        "reason": None if ok is not None else "no cross-domain pairs in the similarity table",
        "detail": f"shallow {_fmt(s)} vs deep {_fmt(d)} over {len(cross)} cross-domain pairs",
    }

    above = {key(k): p["layer2"] > p["deep"] for k, p in cross.items() if math.isfinite(p["layer2"])}
    ok2 = None if not above else all(above.values())
    l2 = [p["layer2"] for p in cross.values()]
    p_above = {key(k): p["layer2"] > p["deep"] for k, p in pcross.items() if math.isfinite(p["layer2"])}
    f2b = {
        "id": "F2b",
        "claim": "Layer 2 is highly similar for every pair of sources.",
        "measure": "per cross-domain pair: layer-2 mean LLMDcos vs the pair's deep-window mean",
        "ours": {"layer2_min": min(l2) if l2 else None, "layer2_mean": _mean(l2),
                 "pairs_above_deep": sum(above.values()), "pairs": len(above)},
        "paper": {"layer2_mean": _mean(p["layer2"] for p in pcross.values()),
                  "pairs_above_deep": sum(p_above.values()), "pairs": len(p_above)},
        "paper_source": pv.LLMDCOS_SOURCE,
        "paper_verdict": verdict(all(p_above.values()) if p_above else None),
        "holds": ok2, "verdict": verdict(ok2),
        "reason": None if ok2 is not None else "no cross-domain pairs with a layer-2 value",
        "detail": f"layer 2 above the deep-window mean in {sum(above.values())}/{len(above)} cross-domain pairs "
                  f"(lowest layer-2 mean {_fmt(min(l2) if l2 else None)})",
    }

    dc, dw = _mean(p["drop"] for p in cross.values()), _mean(p["drop"] for p in within.values())
    ok3 = None if dc is None or dw is None else dc > dw
    pdc, pdw = _mean(p["drop"] for p in pcross.values()), _mean(p["drop"] for p in pwithin.values())
    f2c = {
        "id": "F2c",
        "claim": "For the same source all layers have similar LLMDcos; the shallow-to-deep drop is a "
                 "cross-domain effect.",
        "measure": "shallow-window minus deep-window mean LLMDcos, cross-domain vs within-domain pairs",
        "ours": {"drop_cross": dc, "drop_within": dw, "within_pairs": len(within), "cross_pairs": len(cross)},
        "paper": {"drop_cross": pdc, "drop_within": pdw},
        "paper_source": pv.LLMDCOS_SOURCE,
        "paper_verdict": verdict(pdc > pdw),
        "holds": ok3, "verdict": verdict(ok3),
        "reason": None if ok3 is not None else "needs both within- and cross-domain pairs",
        "detail": f"drop {_fmt(dc)} (cross) vs {_fmt(dw)} (within)",
    }
    return [f2, f2b, f2c]


def finding3(relevance: pl.DataFrame, alpha: float = 0.05) -> list[dict]:
    corr = relevance_correlations(relevance)
    rd, rs = corr["deep"]["rho"], corr["shallow"]["rho"]
    pdp = corr["deep"]["p"]
    if rd is None or rs is None:
        ok, reason = None, ("embedding similarity disabled (relevance.embedding_asset: null)"
                            if relevance["embedding_cos"].null_count() == relevance.height
                            else "fewer than 3 off-diagonal domain pairs with both values, or constant values")
    else:
        ok, reason = bool(rd > 0 and pdp < alpha and rd > rs), None
    f3 = {
        "id": "F3",
        "claim": "Deep-layer LLMDcos reflects how related the data are.",
        "measure": "Spearman rho (off-diagonal domain pairs) between window-mean LLMDcos and the cosine of the "
                   f"domains' mean MiniLM sentence embeddings: deep window vs shallow window (p < {alpha:g})",
        "ours": {"rho_deep": rd, "p_deep": pdp, "rho_shallow": rs, "p_shallow": corr["shallow"]["p"],
                 "n_pairs": corr["deep"]["n"]},
        "paper": None, "paper_source": "not in the paper (beyond the paper)", "paper_verdict": None,
        "holds": ok, "verdict": verdict(ok), "reason": reason,
        "detail": reason or (f"rho deep {_fmt(rd)} (p = {_fmt(pdp, 2)}) vs shallow {_fmt(rs)} "
                             f"over {corr['deep']['n']} domain pairs"),
    }
    deep = relevance.filter(pl.col("window") == "deep")
    shal = relevance.filter(pl.col("window") == "shallow")
    cd, cs = matrix_contrast(deep), matrix_contrast(shal)
    cp = matrix_contrast(paper_fig6_cells())
    ok_b = None if cd["contrast"] is None else cd["contrast"] > 0
    f3b = {
        "id": "F3b",
        "claim": "The deep-layer relevance map has a high diagonal (Fig. 6).",
        "measure": "deep-window matrix: mean diagonal vs mean off-diagonal cell (and rows whose maximum is on "
                   "the diagonal); shallow window for contrast",
        "ours": {"diagonal": cd["diagonal"], "off_diagonal": cd["off_diagonal"], "contrast": cd["contrast"],
                 "rows_peaking_on_diagonal": cd["rows_peaking_on_diagonal"], "n_domains": cd["n_domains"],
                 "shallow_contrast": cs["contrast"]},
        "paper": {"diagonal": cp["diagonal"], "off_diagonal": cp["off_diagonal"], "contrast": cp["contrast"],
                  "rows_peaking_on_diagonal": cp["rows_peaking_on_diagonal"], "n_domains": cp["n_domains"]},
        "paper_source": pv.FIG6_SOURCE, "paper_verdict": verdict(cp["contrast"] > 0),
        "holds": ok_b, "verdict": verdict(ok_b),
        "reason": None if ok_b is not None else "the deep-window matrix is empty",
        "detail": f"diagonal {_fmt(cd['diagonal'])} vs off-diagonal {_fmt(cd['off_diagonal'])} "
                  f"({cd['rows_peaking_on_diagonal']}/{cd['n_domains']} rows peak on the diagonal; shallow "
                  f"contrast {_fmt(cs['contrast'])})",
    }
    return [f3, f3b]


def evaluate(density: pl.DataFrame, similarity: pl.DataFrame, relevance: pl.DataFrame, *, threshold: float,
             shallow: tuple[int, int], deep: tuple[int, int], text_domains: Sequence[str] = (),
             model: str | None = None, alpha: float = 0.05) -> dict:
    """All findings for one model (the content of ``findings.json``)."""
    L = int(density["layer"].max()) + 1
    Ls = int(similarity["layer"].max()) + 1
    if L != Ls:
        raise ValueError(f"the density table has {L} layers but the similarity table {Ls}: they come from "
                         "different models; rerun the analysis")
    items = finding1(density, threshold) + [finding1b(density, text_domains)]
    items += finding2(similarity, shallow, deep) + finding3(relevance, alpha)
    return _jsonable({
        "model": model, "n_layers": L, "threshold": threshold,
        "windows": {"shallow": list(shallow), "deep": list(deep), **{k: list(v) for k, v in f1_windows(L).items()}},
        "findings": items,
    })


def _jsonable(x):
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def findings_table(findings: dict) -> dict:
    """The report table: one row per finding (columns, rows)."""
    columns = ["finding", "claim", "measure", "ours", "paper", "verdict (ours)", "verdict (paper's numbers)"]
    rows = []
    for f in findings["findings"]:
        rows.append([f["id"], f["claim"], f["measure"], f["detail"], _paper_text(f), f["verdict"],
                     f.get("paper_verdict") or "n/a"])
    return {"columns": columns, "rows": rows}


def _paper_text(f: dict) -> str:
    p = f.get("paper")
    if not p:
        return f.get("paper_source") or "n/a"
    nums = ", ".join(f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in p.items() if not isinstance(v, dict))
    return f"{nums} ({f['paper_source']})"
