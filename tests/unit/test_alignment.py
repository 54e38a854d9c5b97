from operators.alignment import release


def test_release_in_arrival_order_up_to_the_watermark():
    held = [(10, "a"), (5, "b"), (20, "c"), (15, "d")]
    assert release(held, 4) == ([], held)
    # 'b' (ts 5) must wait behind 'a' (ts 10): a user's events leave in the order they came
    assert release(held, 10) == (["a", "b"], [(20, "c"), (15, "d")])
    assert release(held, 100) == (["a", "b", "c", "d"], [])
    assert release(held, None) == (["a", "b", "c", "d"], [])
    assert release([], 7) == ([], [])
