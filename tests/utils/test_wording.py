from booktower.utils.wording import counted


def test_a_count_agrees_with_its_noun() -> None:
    assert counted(1, "book") == "1 book"
    assert counted(0, "book") == "0 books"
    assert counted(2_000, "book") == "2,000 books"
    assert counted(1, "row has", "rows have") == "1 row has" and counted(3, "row has", "rows have") == "3 rows have"
