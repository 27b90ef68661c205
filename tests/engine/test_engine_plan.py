"""Batch plans: which samples share a pass (and so which pairs get exact LLMDcos)."""

import itertools
import random

import pytest

from actpat.engine import plan


def test_consecutive():
    assert plan.consecutive(5, 2) == [[0, 1], [2, 3], [4]]


def test_mixed_batches_hold_every_group():
    rows = {"a": [0, 1, 2, 3], "b": [4, 5, 6, 7], "c": [8, 9]}
    batches = plan.mixed(rows, 2)
    assert batches == [[0, 1, 4, 5, 8, 9], [2, 3, 6, 7]]
    with pytest.raises(ValueError):
        plan.mixed(rows, 0)


@pytest.mark.parametrize("n,block", [(50, 16), (50, 34), (10, 4), (7, 3)])
def test_pair_cover_all_pairs_of_n_texts(n, block):
    pairs = list(itertools.combinations(range(n), 2))
    batches = plan.pair_cover(pairs, block)
    assert all(len(b) <= block for b in batches)
    assert plan.covered(batches, pairs)
    # the block design costs n*(g-1) passes for g groups of block/2 texts, not two passes per pair
    g = -(-n // (block // 2))
    assert sum(map(len, batches)) <= n * (g - 1)
    if block >= 16:
        assert sum(map(len, batches)) < 2 * len(pairs) / 3


def test_pair_cover_disjoint_pairs_packs_two_per_pair():
    pairs = [(2 * i, 2 * i + 1) for i in range(20)]
    batches = plan.pair_cover(pairs, 8)
    assert plan.covered(batches, pairs)
    assert sum(map(len, batches)) == 40 and all(len(b) <= 8 for b in batches)


def test_pair_cover_random_subset():
    rnd = random.Random(0)
    allp = list(itertools.combinations(range(50), 2))
    pairs = rnd.sample(allp, 256)
    batches = plan.pair_cover(pairs, 34)
    assert plan.covered(batches, pairs)
    assert sum(map(len, batches)) <= 2 * 256


def test_covered_detects_missing_pair():
    assert not plan.covered([[0, 1], [2, 3]], [(1, 2)])
