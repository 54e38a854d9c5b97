"""Held-out co-purchase retrieval (recall@k), on a case small enough to work out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamrec.behaviour_pairs import Order
from streamrec.copurchase_eval import build_task, recall_at_k, reference_recall, top_k

SPLIT = 1000
TEXTS = {i: f"text {i}" for i in "ABCDEF"}
FIRST_SEEN = {"A": 0, "B": 0, "C": 0, "D": SPLIT + 5, "E": 10, "F": 10**9}
VAL = [
    Order("o1", "u1", SPLIT + 10, ("A", "C")),
    Order("o2", "u2", SPLIT + 20, ("A", "B", "D")),
    Order("o3", "u3", SPLIT + 30, ("E",)),  # one item: no query
]
# catalog rows in id order A, B, C, D, E (F is first seen after the slice)
VECTORS = np.array(
    [
        [1.0, 0.0],  # A
        [0.9, math.sqrt(1 - 0.81)],  # B: next to A
        [0.0, 1.0],  # C
        [-1.0, 0.0],  # D
        [0.6, 0.8],  # E
    ],
    dtype=np.float32,
)


@pytest.fixture
def task():
    return build_task(VAL, TEXTS, FIRST_SEEN, SPLIT)


def test_task_holds_each_query_and_what_it_was_bought_with(task):
    assert task.catalog == ["A", "B", "C", "D", "E"]  # F not seen yet; E seen, not held out
    assert task.targets == {
        "A": {"B", "C", "D"},
        "B": {"A", "D"},
        "C": {"A"},
        "D": {"A", "B"},
    }
    assert task.new_items == {"D"} and task.orders == 2


def test_recall_at_1_by_hand(task):
    # nearest other item: A -> B (hit, 1 of 3), B -> A (hit, 1 of 2), C -> E (miss), D -> C (miss)
    r = recall_at_k(VECTORS, task, k=1)
    assert r["recall"] == pytest.approx((1 / 3 + 1 / 2 + 0 + 0) / 4)
    assert r["hit_rate"] == pytest.approx(0.5)
    assert r["queries"] == 4 and r["catalog"] == 5 and r["orders"] == 2
    assert r["new_item_queries"] == 1
    assert r["new_items_recall"] == 0.0 and r["new_items_hit_rate"] == 0.0


def test_recall_at_2_by_hand(task):
    # A -> B, E (1 of 3); B -> A, E (1 of 2); C -> E, B (0); D -> C, E (0)
    r = recall_at_k(VECTORS, task, k=2)
    assert r["recall"] == pytest.approx((1 / 3 + 1 / 2) / 4)
    # k = 4: the whole catalog but the query, so every query hits
    perfect = recall_at_k(VECTORS, task, k=4)
    assert perfect["hit_rate"] == 1.0


def test_top_k_leaves_the_query_out_and_breaks_ties_by_catalog_order():
    vecs = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    assert top_k(vecs, np.array([1, 3]), 2).tolist() == [[0, 2], [0, 1]]


def test_wrong_number_of_vectors_is_an_error(task):
    with pytest.raises(ValueError, match="5 vectors|4 vectors"):
        recall_at_k(VECTORS[:4], task)


def test_reference_recall_without_text(task):
    train = [
        Order("t1", "u1", 1, ("A", "C", "E")),
        Order("t2", "u2", 2, ("A", "C")),
        Order("t3", "u3", 3, ("B", "D", "E")),
        Order("t4", "u4", 4, ("E",)),
    ]
    ref = reference_recall(train, task, k=1)
    # counts: A -> C (hit); B -> D (hit, 1 of 2); C -> A (hit); D -> B (hit, 1 of 2)
    assert ref["co_purchase_counts"] == pytest.approx((1 / 3 + 1 / 2 + 1 + 1 / 2) / 4)
    # best sellers E (3 orders), then A and C (2): E for everyone -> no hits
    assert ref["popularity"] == 0.0
    ref2 = reference_recall(train, task, k=2)
    # E, A for B, C, D (hits: B 1/2, C 1/1, D 1/2); E, C for A (1/3)
    assert ref2["popularity"] == pytest.approx((1 / 3 + 1 / 2 + 1 + 1 / 2) / 4)
