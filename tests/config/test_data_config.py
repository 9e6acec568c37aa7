"""The data section at load: time cut-offs are times, separators are one character, stray numeric names are
traced to the key that holds them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from booktower.config import ConfigError, dump_config, load_config

CUTOFF = ["data.split.kind=time_cutoff"]
JUNE_FIRST = datetime(2018, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize("value", ["2018-06-01", "'2018-06-01'", "2018-06-01T00:00:00", "2018-06-01T00:00:00Z",
                                   "2018-06-01T02:00:00+02:00"])
def test_an_iso_cutoff_given_with_set_is_a_time_quoted_or_not(value):
    # Unquoted, YAML reads 2018-06-01 as a date and 2018-06-01T00:00:00Z as a datetime; quoted, as text.
    config = load_config(None, [*CUTOFF, f"data.split.valid_start={value}", "data.split.test_start=2018-10-01"])
    assert config.data.split.valid_start == JUNE_FIRST
    assert config.data.split.valid_start.tzinfo is not None


def test_an_unquoted_date_in_a_yaml_file_is_accepted_and_survives_the_dump(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  split:\n    kind: time_cutoff\n    valid_start: 2018-06-01\n    test_start: 2018-10-01\n")
    config = load_config(path)
    assert config.data.split.test_start == datetime(2018, 10, 1, tzinfo=UTC)
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(config))  # what a run writes beside its artefacts must load again
    assert load_config(again).data.split == config.data.split


def test_a_cutoff_that_is_not_iso_names_the_key_and_an_example():
    with pytest.raises(ConfigError) as err:
        load_config(None, [*CUTOFF, "data.split.valid_start=June 2018", "data.split.test_start=July 2018"])
    message = str(err.value)
    assert "data.split.valid_start 'June 2018' is not an ISO-8601 date" in message
    assert "data.split.test_start 'July 2018' is not an ISO-8601 date" in message
    assert "2018-06-01" in message  # the example to copy
    assert "must be before" not in message  # not compared as text


def test_an_epoch_number_is_refused_rather_than_guessed():
    with pytest.raises(ConfigError, match=r"data\.split\.valid_start must be an ISO-8601 date.*got int 1527811200"):
        load_config(None, [*CUTOFF, "data.split.valid_start=1527811200", "data.split.test_start=2018-10-01"])


def test_cutoffs_are_compared_as_times_across_offsets():
    # 23:00 at UTC-5 is 04:00 UTC the next day: after the test cut-off, although it reads earlier as text.
    with pytest.raises(ConfigError) as err:
        load_config(None, [*CUTOFF, "data.split.valid_start='2018-09-30T23:00:00-05:00'",
                           "data.split.test_start='2018-10-01T00:00:00+00:00'"])
    assert "2018-10-01T04:00:00+00:00" in str(err.value) and "must be before data.split.test_start" in str(err.value)
    # and the other way round: later as text, earlier in time
    config = load_config(None, [*CUTOFF, "data.split.valid_start='2018-10-01T01:00:00+05:00'",
                                "data.split.test_start='2018-10-01T00:00:00+00:00'"])
    assert config.data.split.valid_start < config.data.split.test_start


def test_equal_cutoffs_would_leave_validation_empty():
    with pytest.raises(ConfigError, match="must be before"):
        load_config(None, [*CUTOFF, "data.split.valid_start=2018-10-01", "data.split.test_start=2018-10-01"])


def test_a_separator_of_more_than_one_byte_is_refused_at_load():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.source.separator=;;"])
    assert "data.source.separator must be one single-byte character" in str(err.value) and "';;'" in str(err.value)
    with pytest.raises(ConfigError, match="data.source.items_separator"):
        load_config(None, ["data.source.items_separator=§"])  # one character, two bytes in UTF-8
    with pytest.raises(ConfigError, match="quote it"):
        load_config(None, ["data.source.separator=|"])  # YAML: an empty block scalar


@pytest.mark.parametrize("written", [r"\t", "tab", '"\\t"'])
def test_a_tab_can_be_written_through_set(written):
    assert load_config(None, [f"data.source.interactions_separator={written}"]).data.source.interactions_separator == "\t"


def test_each_file_falls_back_to_the_shared_separator():
    source = load_config(None, ["data.source.separator='|'", "data.source.interactions_separator=;"]).data.source
    assert source.separator_for("interactions") == ";"
    assert source.separator_for("items") == "|" and source.separator_for("users") == "|"
    assert load_config(None).data.source.separator_for("items") is None  # sniffed


def test_clearing_item_numeric_names_the_inherited_lists_to_clear_too():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.columns.item_numeric=[]"])
    message = str(err.value)
    assert "data.columns.item_count_columns lists ['rating_number']" in message
    assert "data.columns.item_nonnegative lists ['price']" in message  # both at once, not one per attempt
    assert "is the default, not set in your config" in message
    assert "--set data.columns.item_count_columns=[]" in message
    cleared = ["data.columns.item_numeric=[]", "data.columns.item_count_columns=[]", "data.columns.item_nonnegative=[]"]
    assert load_config(None, cleared).data.columns.item_numeric == []


def test_a_stray_numeric_name_set_in_the_config_is_said_to_be_set_there(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  columns:\n    item_numeric: [price]\n    item_count_columns: [ratings]\n"
                    "    item_nonnegative: [price]\n")
    with pytest.raises(ConfigError, match=r"item_count_columns lists \['ratings'\].*is set in your config"):
        load_config(path)
