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
from .intervals import cell_replicates, density_replicates, pair_windows, probe_matrix, spearman_rows, window_mean
from .relevance import relevance_correlations
from .uncertainty import FAILS as _FAILS, HOLDS as _HOLDS, INCONCLUSIVE, UNMEASURED as _UNMEASURED
from .uncertainty import VERDICT_RULE, percentile_interval, shifted, three_way

HOLDS, FAILS, UNMEASURED = _HOLDS, _FAILS, _UNMEASURED


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


def fmt(x, digits: int = 3) -> str:
    """A measured number as the findings' details print it (3 significant places)."""
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
        detail = (f"mean over domains: mid layers {fmt(ours['mid'])} vs deep half {fmt(ours['deep_half'])} "
                  f"vs layer 1 {fmt(ours['first'])}; shape holds in {n_ok}/{len(per_domain)} domains")
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
        "detail": reason or (f"text domains {fmt(ours['text_deep_share'])} vs task domains "
                             f"{fmt(ours['task_deep_share'])}"),
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
        "paper_source": pv.LLMDCOS_SOURCE + f"; 0-indexed windows {pw['shallow'][0]}..{pw['shallow'][1]} and "
                                            f"{pw['deep'][0]}..{pw['deep'][1]} of 32",
        "paper_verdict": verdict(ps > pd_),
        "holds": ok, "verdict": verdict(ok),
        "reason": None if ok is not None else "no cross-domain pairs in the similarity table",
        "detail": f"shallow {fmt(s)} vs deep {fmt(d)} over {len(cross)} cross-domain pairs",
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
                  f"(lowest layer-2 mean {fmt(min(l2) if l2 else None)})",
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
        "detail": f"drop {fmt(dc)} (cross) vs {fmt(dw)} (within)",
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
        "detail": reason or (f"rho deep {fmt(rd)} (p = {fmt(pdp, 2)}) vs shallow {fmt(rs)} "
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
        "detail": f"diagonal {fmt(cd['diagonal'])} vs off-diagonal {fmt(cd['off_diagonal'])} "
                  f"({cd['rows_peaking_on_diagonal']}/{cd['n_domains']} rows peak on the diagonal; shallow "
                  f"contrast {fmt(cs['contrast'])})",
    }
    return [f3, f3b]


def measure(density: pl.DataFrame, similarity: pl.DataFrame, relevance: pl.DataFrame, *, threshold: float,
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


# ----------------------------------------------------------------------------- intervals and verdicts


def _interval_entry(quantity: str, point: float | None, boot: np.ndarray | None, n: dict, level: float,
                    n_boot: int) -> dict:
    iv = None if point is None or boot is None else percentile_interval(boot, level)
    return {"quantity": quantity, "value": point, "lo": iv[0] if iv else None, "hi": iv[1] if iv else None,
            "level": level, "resamples": n_boot, "n": n, "verdict": three_way(iv)}


def _f1_contrast(per_layer: np.ndarray, L: int) -> np.ndarray:
    """min(mid - deep half, mid - layer 1) of per-layer values [..., L]: > 0 is F1's shape."""
    w = f1_windows(L)
    mid, deep, first = (window_mean(per_layer, w[k]) for k in ("mid", "deep_half", "first"))
    return np.minimum(mid - deep, mid - first)


def add_intervals(result: dict, *, density: pl.DataFrame, probes: Mapping[str, pl.DataFrame], pairs: pl.DataFrame,
                  relevance: pl.DataFrame, text_domains: Sequence[str] = (), comparisons: pl.DataFrame | None = None,
                  n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Give every finding of ``result`` (from ``measure``) a bootstrap interval and a three-way verdict.

    The point verdict (strict inequalities on the means) stays as ``point_verdict``; ``verdict`` becomes
    holds / does not hold / inconclusive from the interval (``actpat.analysis.uncertainty``).
    """
    rng = np.random.default_rng(seed)
    L = result["n_layers"]
    gamma = result["threshold"]
    by_id = {f["id"]: f for f in result["findings"]}
    tk = density.filter(pl.col("measure") == "top_k_share")["param"]
    top_k = float(tk[0]) if tk.len() else None

    # Finding 1: per domain, replicates of the per-layer profiles from the probes, shifted to the exact values
    reps: dict[str, dict[str, np.ndarray]] = {"above": {}, "top_k_share": {}}
    exact: dict[str, dict[str, np.ndarray]] = {"above": {}, "top_k_share": {}}
    n_samples = {}
    profiles = {"above": _profiles(density, "above_threshold", gamma)}
    if top_k is not None:
        profiles["top_k_share"] = _profiles(density, "top_k_share", top_k)
    for d in sorted(probes):
        P, layer, weight = probe_matrix(probes[d])
        n_samples[d] = P.shape[0]
        got = density_replicates(P, layer, weight, gamma, top_k, n_boot, rng)
        for m, (on_probe, boot) in got.items():
            if d in profiles.get(m, {}):
                exact[m][d] = profiles[m][d]
                reps[m][d] = shifted(exact[m][d], boot, on_probe)
    for fid, m in (("F1", "above"), ("F1 (top-k)", "top_k_share")):
        if fid not in by_id:
            continue
        doms = sorted(reps[m])
        if doms:
            point = float(min(_f1_contrast(exact[m][d], L) for d in doms))
            boot = np.min(np.stack([_f1_contrast(reps[m][d], L) for d in doms]), axis=0)
            per_domain = {d: _interval_entry("min(mid - deep half, mid - layer 1)", float(_f1_contrast(exact[m][d], L)),
                                             _f1_contrast(reps[m][d], L), {"samples": n_samples[d]}, level, n_boot)
                          for d in doms}
        else:
            point, boot, per_domain = None, None, {}
        measure = "density above γ" if m == "above" else "top-k share"
        by_id[fid]["interval"] = _interval_entry(
            f"{measure}: min over domains of min(mid - deep half, mid - layer 1)", point, boot,
            {"samples_per_domain": n_samples, "domains": len(doms)}, level, n_boot)
        by_id[fid]["interval"]["per_domain"] = {d: {k: e[k] for k in ("value", "lo", "hi", "verdict")}
                                                for d, e in per_domain.items()}
    if "F1b" in by_id:
        text = [d for d in reps["top_k_share"] if d in set(text_domains)]
        task = [d for d in reps["top_k_share"] if d not in set(text_domains)]
        if text and task:
            deep = lambda v: v[..., L // 2:].sum(-1)  # noqa: E731
            point = float(np.mean([deep(exact["top_k_share"][d]) for d in text])
                          - np.mean([deep(exact["top_k_share"][d]) for d in task]))
            boot = (np.mean([deep(reps["top_k_share"][d]) for d in text], 0)
                    - np.mean([deep(reps["top_k_share"][d]) for d in task], 0))
        else:
            point = boot = None
        by_id["F1b"]["interval"] = _interval_entry("deep-half top-k share: mean of text domains - mean of task domains",
                                                   point, boot, {"samples_per_domain": n_samples}, level, n_boot)

    # Findings 2-3: sample pairs resampled within each cell
    win = {"shallow": tuple(result["windows"]["shallow"]), "deep": tuple(result["windows"]["deep"])}
    per_pair = pair_windows(pairs, win)
    cells = cell_replicates(per_pair, ["shallow", "deep", "layer2"], n_boot, rng)
    cross = {k: v for k, v in cells.items() if k[0] != k[1]}
    within = {k: v for k, v in cells.items() if k[0] == k[1]}
    npairs = {f"{a}–{b}": int(per_pair.filter((pl.col("domain_a") == a) & (pl.col("domain_b") == b)).height)
              for a, b in cells}
    n_cells = {"cells": len(cells), "pairs_min": min(npairs.values(), default=0),
               "pairs_total": sum(npairs.values())}

    def stat(cs, f):
        if not cs:
            return None, None
        return float(f(np.array([[c[k][0] for k in ("shallow", "deep", "layer2")] for c in cs.values()]))), \
            f(np.stack([np.stack([c[k][1] for k in ("shallow", "deep", "layer2")], -1) for c in cs.values()], 0))

    mean_drop = lambda a: (a[..., 0] - a[..., 1]).mean(0)  # noqa: E731
    if "F2" in by_id:
        by_id["F2"]["interval"] = _interval_entry("mean over cross-domain cells of (shallow - deep)",
                                                  *stat(cross, mean_drop), n_cells, level, n_boot)
    if "F2b" in by_id:
        by_id["F2b"]["interval"] = _interval_entry("min over cross-domain cells of (layer 2 - deep)",
                                                   *stat(cross, lambda a: (a[..., 2] - a[..., 1]).min(0)), n_cells,
                                                   level, n_boot)
    if "F2c" in by_id:
        (pc, bc), (pw, bw) = stat(cross, mean_drop), stat(within, mean_drop)
        ok = pc is not None and pw is not None
        by_id["F2c"]["interval"] = _interval_entry("drop (shallow - deep): cross-domain mean - within-domain mean",
                                                   pc - pw if ok else None, bc - bw if ok else None, n_cells, level,
                                                   n_boot)
    if "F3" in by_id or "F3b" in by_id:
        emb = {(r["domain_a"], r["domain_b"]): r["embedding_cos"]
               for r in relevance.filter(pl.col("window") == "deep").iter_rows(named=True)}
        off = [k for k in cross if emb.get(k) is not None]
        if "F3" in by_id:
            if len(off) >= 3:
                y = np.array([emb[k] for k in off])
                rho = {w: spearman_rows(np.array([[cross[k][w][0] for k in off]]), y)[0] for w in ("deep", "shallow")}
                brho = {w: spearman_rows(np.stack([cross[k][w][1] for k in off], 1), y) for w in ("deep", "shallow")}
                e_deep = _interval_entry("Spearman rho, deep window", float(rho["deep"]), brho["deep"],
                                         {"cells": len(off)}, level, n_boot)
                e_diff = _interval_entry("Spearman rho: deep window - shallow window",
                                         float(rho["deep"] - rho["shallow"]), brho["deep"] - brho["shallow"],
                                         {**n_cells, "off_diagonal_cells": len(off)}, level, n_boot)
                v = (HOLDS if e_deep["verdict"] == HOLDS and e_diff["verdict"] == HOLDS else
                     FAILS if FAILS in (e_deep["verdict"], e_diff["verdict"]) else
                     UNMEASURED if UNMEASURED in (e_deep["verdict"], e_diff["verdict"]) else INCONCLUSIVE)
                by_id["F3"]["interval"] = {**e_diff, "verdict": v, "rho_deep": e_deep}
            else:
                by_id["F3"]["interval"] = _interval_entry("Spearman rho: deep - shallow", None, None, n_cells, level,
                                                          n_boot)
        if "F3b" in by_id:
            diag = [k for k in within]
            if diag and cross:
                point = (np.mean([within[k]["deep"][0] for k in diag]) - np.mean([cross[k]["deep"][0] for k in cross]))
                boot = (np.mean([within[k]["deep"][1] for k in diag], 0)
                        - np.mean([cross[k]["deep"][1] for k in cross], 0))
            else:
                point = boot = None
            by_id["F3b"]["interval"] = _interval_entry("deep window: mean diagonal cell - mean off-diagonal cell",
                                                       None if point is None else float(point), boot, n_cells, level,
                                                       n_boot)

    for f in result["findings"]:
        f["point_verdict"] = f["verdict"]
        if "interval" in f:
            f["verdict"] = f["interval"]["verdict"]
    if comparisons is not None:
        result["findings"].append(depth_control(comparisons))
    result["verdict_rule"] = VERDICT_RULE.format(level=100 * level)
    return _jsonable(result)


def depth_control(comparisons: pl.DataFrame) -> dict:
    """Validation 1's control: does the paper rule beat the linear depth ramp with its own spread?"""
    rows = comparisons.filter((pl.col("kind") == "allocation") & (pl.col("allocation") == "depth_ramp")).sort(
        "method", "calibration", "sparsity")
    per = [{k: r[k] for k in ("method", "calibration", "sparsity", "log_ppl_diff", "lo", "hi", "ppl_ratio",
                               "seeds", "windows", "blocks", "verdict")} for r in rows.iter_rows(named=True)]
    vs = {p["verdict"] for p in per}
    v = UNMEASURED if not per else HOLDS if vs == {HOLDS} else FAILS if vs == {FAILS} else INCONCLUSIVE
    detail = "; ".join(f"{p['method']} {p['sparsity']:.0%} ({p['calibration']}): PPL ratio ramp/paper "
                       f"{p['ppl_ratio']:.3f}, Δ log PPL {p['log_ppl_diff']:+.3f} [{p['lo']:+.3f}, {p['hi']:+.3f}], "
                       f"{p['verdict']}" for p in per) or "no depth_ramp runs next to paper runs"
    return {
        "id": "V1-depth",
        "claim": "The activation counts add something over depth alone: the paper rule prunes better than a "
                 "linear depth ramp with the same spread.",
        "measure": "log PPL(depth_ramp) - log PPL(paper), mean over shared calibration seeds, paired bootstrap over "
                   "seeds and token blocks of the evaluation text; holds only if it holds at every sparsity",
        "ours": {"per_sparsity": per}, "paper": None, "paper_source": "not in the paper (a control)",
        "paper_verdict": None, "holds": None if v in (UNMEASURED, INCONCLUSIVE) else v == HOLDS,
        "verdict": v, "point_verdict": None, "reason": None if per else detail, "detail": detail,
        "interval": {"quantity": "log PPL(depth ramp) - log PPL(paper rule)",
                     "verdict": v,
                     "n": {"runs": len(per)}},
    }
