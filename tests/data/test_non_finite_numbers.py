"""inf and -inf in a numeric column are missing values, as an unreadable number is: never the largest value, and
never a bare numpy warning."""

from __future__ import annotations

import warnings

import numpy as np

from booktower.config.data import DataConfig
from booktower.data.features import fit_numeric, transform_numeric
from booktower.data.prepare import prepare


def test_infinite_values_fit_and_transform_as_missing_ones():
    with_inf = np.array([1.0, 2.0, np.inf, -np.inf, 4.0, 3.0])
    with_nan = np.array([1.0, 2.0, np.nan, np.nan, 4.0, 3.0])
    fit = np.ones(6, dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered" is an error here
        for log in (False, True):
            spec = fit_numeric("rating", with_inf, fit, log)
            assert spec == fit_numeric("rating", with_nan, fit, log)
            assert spec.missing_indicator
            np.testing.assert_array_equal(transform_numeric([spec], {"rating": with_inf}, 6),
                                          transform_numeric([spec], {"rating": with_nan}, 6))
    features = transform_numeric([fit_numeric("rating", with_inf, fit, False)], {"rating": with_inf}, 6)
    np.testing.assert_array_equal(features[2:4], [[0.0, 1.0], [0.0, 1.0]])  # the median, flagged missing


def _prepared_rating(tmp_path, value: str) -> np.ndarray:
    books = tmp_path / f"books-{value}.csv"
    books.write_text("item_id,title,average_rating\n" + "".join(
        f"b{i},Book {i},{value if i == 0 else 3 + i / 10}\n" for i in range(5)))
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp\n" + "".join(
        f"u{u},b{i},{100 * u + i}\n" for u in range(3) for i in range(5)))
    config = DataConfig.model_validate({
        "source": {"interactions": str(log), "items": str(books)}, "cache_dir": None,
        "min_user_interactions": 1, "min_item_interactions": 1,
        "columns": {"user": "user_id", "item": "item_id", "timestamp": "timestamp", "timestamp_unit": "s",
                    "item_author": None, "item_categories": None, "item_numeric": ["average_rating"],
                    "item_count_columns": [], "item_nonnegative": []}})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        data, _ = prepare(config)
    names = data.item_features.numeric_names
    return data.item_features.numeric[:, names.index("average_rating"):names.index("average_rating") + 2]


def test_an_infinite_rating_in_a_catalogue_reaches_the_features_as_missing(tmp_path):
    np.testing.assert_array_equal(_prepared_rating(tmp_path, "inf"), _prepared_rating(tmp_path, ""))
    np.testing.assert_array_equal(_prepared_rating(tmp_path, "-inf"), _prepared_rating(tmp_path, ""))


def test_an_infinite_rating_is_counted_as_set_to_missing_where_it_is(tmp_path):
    import polars as pl

    from booktower.data.values import read_numbers

    parsed = read_numbers(pl.DataFrame({"rating": ["4.5", "inf", "-inf", "", "3"]}), "rating", "data.columns.item_numeric")
    assert parsed.values.to_list() == [4.5, None, None, None, 3.0]
    assert parsed.bad.to_list() == [False, True, True, False, False]  # an empty cell is missing, not unreadable
