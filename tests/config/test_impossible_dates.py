"""A value shaped like a date that names no real day is a ConfigError naming its key, never PyYAML's ValueError."""

from datetime import UTC, datetime

import pytest

from booktower.config import ConfigError, load_config

CUTOFF = ["data.split.kind=time_cutoff", "data.split.valid_start=2018-01-01"]


@pytest.mark.parametrize(("value", "reason"), [("2018-13-01", "month must be in 1..12"),
                                               ("2018-02-30", "day is out of range for month"),
                                               ("2018-02-28T25:00:00", "hour must be in 0..23")])
def test_an_impossible_cutoff_given_with_set_names_the_key_and_why(value, reason):
    with pytest.raises(ConfigError) as err:
        load_config(None, [*CUTOFF, f"data.split.test_start={value}"])
    message = str(err.value)
    assert f"data.split.test_start '{value}' is not a real date or time ({reason})" in message
    assert "2018-06-01" in message  # the example to copy


def test_an_impossible_cutoff_in_a_yaml_file_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "cutoffs.yaml"
    path.write_text("data:\n  split:\n    kind: time_cutoff\n"
                    "    valid_start: 2018-01-01\n    test_start: 2018-02-30\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message
    assert "data.split.test_start '2018-02-30' is not a real date or time (day is out of range" in message


def test_an_impossible_date_given_to_a_field_that_is_no_date_is_a_type_error_naming_it():
    with pytest.raises(ConfigError, match=r"seed: .*integer.*'2018-02-30'"):
        load_config(None, ["seed=2018-02-30"])


def test_real_dates_still_load_as_dates_in_files_and_overrides(tmp_path):
    path = tmp_path / "cutoffs.yaml"
    path.write_text("data:\n  split:\n    kind: time_cutoff\n"
                    "    valid_start: 2018-01-01\n    test_start: 2018-02-28\n")
    config = load_config(path, ["data.split.valid_start=2018-01-31T12:00:00Z"])
    assert config.data.split.valid_start == datetime(2018, 1, 31, 12, tzinfo=UTC)
    assert config.data.split.test_start == datetime(2018, 2, 28, tzinfo=UTC)


def test_duplicate_keys_are_still_refused_beside_an_impossible_date(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("data:\n  split:\n    test_start: 2018-02-30\n  split:\n    kind: time_cutoff\n")
    with pytest.raises(ConfigError, match="appears twice"):
        load_config(path)
