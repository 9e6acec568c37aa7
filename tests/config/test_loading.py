from pathlib import Path

import pytest

from booktower.config import BooktowerConfig, ConfigError, dump_config, load_config

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_validate():
    config = load_config(None)
    assert config.data.min_item_interactions == 5
    assert config.model.feature_hidden if hasattr(config.model, "feature_hidden") else config.model.item.feature_hidden


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    path = write(tmp_path, "bad.yaml", "data:\n  min_item_interaction: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message
    assert "data.min_item_interaction" in message
    assert "did you mean data.min_item_interactions" in message
    assert "allowed here" in message


def test_wrong_type_is_reported_with_value(tmp_path):
    path = write(tmp_path, "bad.yaml", "training:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"training\.epochs.*'many'"):
        load_config(path)


def test_cross_field_check(tmp_path):
    path = write(tmp_path, "bad.yaml", "data:\n  columns:\n    min_rating: 4\n")
    with pytest.raises(ConfigError, match="min_rating needs columns.rating"):
        load_config(path)



def test_an_early_stopping_metric_validation_does_not_report_is_refused_at_load():
    key = "training.early_stopping.metric"
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"{key}=NDCG@25"])
    message = str(err.value)
    assert f"{key}: 'NDCG@25' is not a validation metric" in message and "evaluation.ks [10, 20, 50]" in message
    assert "(got {" not in message  # a check across sections does not dump the whole config
    assert load_config(None, [f"{key}=NDCG@25", "evaluation.ks=[10,25]"])  # fine where K=25 is evaluated
    with pytest.raises(ConfigError, match="popularity@20"):  # reported, but lower is better: not for selection
        load_config(None, [f"{key}=popularity@20"])


def test_selection_metrics_are_the_ones_evaluation_reports():
    import torch

    from booktower.config.evaluation import selection_metrics
    from booktower.data.toy import checkerboard
    from booktower.evaluation import evaluate_split

    data = checkerboard(10)
    result = evaluate_split(lambda users: torch.rand(len(users), data.n_items), data, "validation", [1, 3])
    assert set(selection_metrics([1, 3])) == set(result.metrics) - {"popularity@1", "popularity@3"}


def test_overrides_are_typed_and_win(tmp_path):
    path = write(tmp_path, "c.yaml", "data:\n  min_item_interactions: 3\n")
    config = load_config(path, ["data.min_item_interactions=10", "evaluation.ks=[5, 1, 20]", "data.cache_dir=null"])
    assert config.data.min_item_interactions == 10
    assert config.evaluation.ks == [1, 5, 20]
    assert config.data.cache_dir is None


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["data.min_item_interactions"])


def test_unknown_override_key_is_an_error():
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, ["training.epochz=3"])


def test_inherit_merges_deltas(tmp_path):
    write(tmp_path, "base.yaml", "seed: 1\ndata:\n  min_user_interactions: 2\n  min_item_interactions: 3\n")
    child = write(tmp_path, "child.yaml", "inherit: base.yaml\ndata:\n  min_item_interactions: 7\n")
    config = load_config(child)
    assert (config.seed, config.data.min_user_interactions, config.data.min_item_interactions) == (1, 2, 7)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_dump_round_trips(tmp_path):
    config = load_config(None, ["seed=7"])
    path = write(tmp_path, "dumped.yaml", dump_config(config))
    assert load_config(path) == config


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    assert isinstance(load_config(path), BooktowerConfig)


def test_every_field_is_documented():
    from pydantic import BaseModel

    undocumented = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name}.")
            elif not field.description:
                undocumented.append(prefix + name)

    walk(BooktowerConfig, "")
    assert undocumented == []


@pytest.mark.parametrize("overrides, message", [
    (["training.optimizer.kind=adamw"], "training.optimizer.kind=adamw cannot update sparse embedding tables"),
    (["model.history.pooling=attention", "model.history.attention_heads=5"],
     "model.history.attention_heads (5) must divide the history width, model.item.id_dim (32)"),
    (["model.item.use_id=false"], "model.history.pooling reads the item ID embeddings"),
])
def test_model_and_optimiser_combinations_that_cannot_train_are_refused_at_load(overrides, message):
    """These used to fail only when the model or the optimisers were built, after the data was prepared."""
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert message in str(err.value) and "(got {" not in str(err.value)
    assert "Value error" not in str(err.value)


def test_the_fixes_those_errors_name_are_valid_configs():
    assert load_config(None, ["training.optimizer.kind=adamw", "model.sparse_ids=false"])
    assert load_config(None, ["model.history.pooling=attention", "model.history.attention_heads=4"])
    assert load_config(None, ["model.item.use_id=false", "model.history.pooling=none"])


def test_a_key_given_twice_is_refused_with_the_file_key_and_both_lines(tmp_path):
    path = write(tmp_path, "dup.yaml", "training:\n  epochs: 3\ndata:\n  min_item_interactions: 2\n"
                                       "training:\n  batch_size: 64\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: the key training appears twice, on lines 1 and 5")
    nested = write(tmp_path, "nested.yaml", "training:\n  epochs: 3\n  early_stopping:\n    patience: 1\n"
                                            "    patience: 2\n")
    with pytest.raises(ConfigError, match=r"training\.early_stopping\.patience appears twice, on lines 4 and 5"):
        load_config(nested)


def test_a_duplicate_in_an_inherited_file_names_that_file_but_a_child_may_override_its_parent(tmp_path):
    parent = write(tmp_path, "base.yaml", "training:\n  epochs: 3\n  epochs: 4\n")
    child = write(tmp_path, "child.yaml", "inherit: base.yaml\ntraining:\n  epochs: 5\n")
    with pytest.raises(ConfigError, match=f"{parent}: the key training.epochs appears twice, on lines 2 and 3"):
        load_config(child)
    parent.write_text("training:\n  epochs: 3\n")
    assert load_config(child).training.epochs == 5


def test_an_unknown_key_inside_a_sweep_space_entry_lists_the_entrys_keys():
    with pytest.raises(ConfigError, match=r"sweep\.space\.model\.temperature\.lgo: unknown key .*allowed here: "
                                          r"choices, high, log, low, step, type"):
        load_config(None, ["sweep.space={model.temperature: {type: float, low: 0.05, high: 0.2, lgo: true}}"])


# The bundled sample stands in for default.yaml's own paths only: a path the user names never falls back to it,
# even when it reads data/users.csv like the default (a user in the wrong folder must get an error).
DEFAULT_YAML = REPO / "configs" / "default.yaml"


def _fallbacks(config: BooktowerConfig) -> tuple:
    return config.data.source.fallback_interactions, config.data.source.fallback_items


def test_the_built_in_default_keeps_its_sample_fallback():
    assert all(_fallbacks(load_config(DEFAULT_YAML)))


@pytest.mark.parametrize("override", ["data.source.interactions=data/users.csv", "data.source.items=data/books.csv",
                                      "data.source.interactions=elsewhere/reads.csv"])
def test_a_path_named_with_set_clears_the_sample_fallback(override):
    assert _fallbacks(load_config(DEFAULT_YAML, [override])) == (None, None)


def test_a_path_named_in_a_config_that_inherits_clears_the_sample_fallback(tmp_path):
    mine = write(tmp_path, "mine.yaml",
                 f"inherit: {DEFAULT_YAML}\ndata:\n  source:\n    interactions: data/users.csv\n")
    assert _fallbacks(load_config(mine)) == (None, None)
    # Two levels down: the path is still the user's own, named below the file that set the fallback.
    experiment = write(tmp_path, "experiment.yaml", "inherit: mine.yaml\ntraining:\n  epochs: 2\n")
    assert _fallbacks(load_config(experiment)) == (None, None)


def test_a_layer_that_names_the_fallback_beside_its_path_keeps_it(tmp_path):
    sample = "pkg:sample/users_trimmed.csv"
    config = load_config(DEFAULT_YAML, ["data.source.interactions=data/users.csv",
                                        f"data.source.fallback_interactions={sample}"])
    assert str(config.data.source.fallback_interactions) == sample and config.data.source.fallback_items is None
    # A run's config.yaml writes every key in one file: a run on the sample reopens on the sample.
    dumped = write(tmp_path, "config.yaml", dump_config(load_config(DEFAULT_YAML)))
    assert _fallbacks(load_config(dumped)) == _fallbacks(load_config(DEFAULT_YAML))


def test_other_overrides_leave_the_sample_fallback_alone():
    assert all(_fallbacks(load_config(DEFAULT_YAML, ["data.cache_dir=null", "data.source.encoding=latin1"])))


def test_a_sampler_setting_the_chosen_sampler_never_reads_is_refused(tmp_path):
    """popularity_alpha under the mixed sampler changed nothing: a sweep once searched it, to no effect."""
    path = write(tmp_path, "bad.yaml", "training:\n  negatives: {sampler: mixed, popularity_alpha: 0.3}\n")
    with pytest.raises(ConfigError, match=r"popularity_alpha is read by sampler: popularity only.*'mixed'"):
        load_config(path)
    fine = write(tmp_path, "fine.yaml", "training:\n  negatives: {sampler: popularity, popularity_alpha: 0.3}\n")
    assert load_config(fine).training.negatives.popularity_alpha == 0.3


def test_a_missing_inherited_file_names_the_config_that_inherits_it_and_the_line(tmp_path):
    child = write(tmp_path, "child.yaml", "seed: 3\ninherit: nothere.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(child)
    message = str(err.value)
    assert message.startswith(f"{child}, line 2: `inherit: nothere.yaml` names {tmp_path / 'nothere.yaml'}, "
                              "which does not exist")
    assert "Fix: point `inherit:` at an existing YAML file" in message
    (tmp_path / "folder").mkdir()
    folder = write(tmp_path, "folder_child.yaml", "inherit: folder\n")
    with pytest.raises(ConfigError, match=r"folder_child.yaml, line 1: .* which is a folder, not a YAML file"):
        load_config(folder)


def test_a_single_value_for_a_list_shows_how_to_write_a_list(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["evaluation.ks=10"])
    assert "evaluation.ks: Input should be a valid list (got 10); write a list: --set 'evaluation.ks=[10,20,50]'" \
        in str(err.value)
    assert load_config(None, ["evaluation.ks=[10,20,50]"]).evaluation.ks == [10, 20, 50]  # the hint's form works
    path = write(tmp_path, "scalar.yaml", "data:\n  columns:\n    item_numeric: price\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "write a list: item_numeric: [\"average_rating\",\"rating_number\",\"price\"]" in str(err.value)
