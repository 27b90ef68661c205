"""Which samples share a forward/backward pass.

Exact LLMDcos comes for free for every pair inside one pass (the per-layer Gram
matrix), so planning passes decides which pairs are measured and at what cost.  The
paper's code spends two passes per pair; these plans spend about one pass per text.
"""

from __future__ import annotations

import math


def consecutive(n: int, batch_size: int) -> list[list[int]]:
    """Batches 0..B-1, B..2B-1, ... (within-domain scoring)."""
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


def mixed(rows_by_group: dict[str, list[int]], per_batch: int) -> list[list[int]]:
    """Mixed batches holding ``per_batch`` samples of every group.

    Batch k takes rows [k·p, (k+1)·p) of each group, so every batch yields pairs between
    all groups (cross-domain) and, with p >= 2, within each group.  Groups with fewer
    rows simply drop out of the later batches.
    """
    if per_batch < 1:
        raise ValueError("per_batch must be >= 1")
    longest = max((len(r) for r in rows_by_group.values()), default=0)
    out = []
    for k in range(math.ceil(longest / per_batch)):
        batch = [i for g in rows_by_group for i in rows_by_group[g][k * per_batch:(k + 1) * per_batch]]
        if batch:
            out.append(batch)
    return out


def pair_cover(pairs: list[tuple[int, int]], block_size: int) -> list[list[int]]:
    """Batches of at most ``block_size`` texts such that every pair shares a batch.

    Two strategies, the cheaper (fewer texts scored in total) is returned:
      * blocks: split the texts that occur in pairs into groups of block_size/2 and score
        every needed pair of groups together; about n·(g-1) passes for n texts in g groups,
        the right choice when texts recur in many pairs (e.g. all pairs of 50 documents);
      * packing: put each pair's two texts into the current batch until it is full; two
        passes per pair at most, the right choice for disjoint pairs (STS-B style).
    """
    if block_size < 2:
        raise ValueError("block_size must be >= 2")
    pairs = [(a, b) for a, b in pairs if a != b]
    if not pairs:
        return []
    texts = sorted({t for p in pairs for t in p})
    half = max(1, block_size // 2)
    group_of = {t: i // half for i, t in enumerate(texts)}
    members: dict[int, list[int]] = {}
    for t in texts:
        members.setdefault(group_of[t], []).append(t)
    needed = sorted({tuple(sorted((group_of[a], group_of[b]))) for a, b in pairs})
    covered_groups = set()
    blocks = []
    for ga, gb in needed:
        if ga == gb:
            continue
        blocks.append(members[ga] + members[gb])
        covered_groups |= {ga, gb}
    for ga, gb in needed:
        if ga == gb and ga not in covered_groups:
            blocks.append(list(members[ga]))
            covered_groups.add(ga)

    packed: list[list[int]] = []
    cur: list[int] = []
    for a, b in pairs:
        new = [t for t in (a, b) if t not in cur]
        if len(cur) + len(new) > block_size:
            packed.append(cur)
            cur = []
            new = [a, b]
        cur.extend(new)
    if cur:
        packed.append(cur)
    cost = lambda plan: sum(len(b) for b in plan)  # noqa: E731
    return blocks if cost(blocks) <= cost(packed) else packed


def covered(batches: list[list[int]], pairs: list[tuple[int, int]]) -> bool:
    together = set()
    for b in batches:
        s = sorted(b)
        together |= {(x, y) for i, x in enumerate(s) for y in s[i + 1:]}
    return all(tuple(sorted(p)) in together for p in pairs if p[0] != p[1])
