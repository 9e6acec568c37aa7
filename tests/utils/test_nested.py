from booktower.utils.nested import flatten


def test_flatten_joins_keys_with_dots_and_keeps_leaves():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}) == {"a.b": 1, "a.c.d": [1, 2], "e": "x"}
    assert flatten({"a": {}}) == {}
