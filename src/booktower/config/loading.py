"""Reading YAML configs, applying `--set key=value` overrides, and explaining validation errors."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from booktower.config.root import BooktowerConfig

INHERIT_KEY = "inherit"


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the file, the key and what is allowed."""


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader, except that a scalar shaped like a date that is no date (`2018-02-30`, `2018-13-01`) stays text.

    PyYAML builds dates while loading, so such a value raised a bare ValueError (with no key, file or line) before
    any field could check it. As text it reaches the field: a cut-off's validator says it is no real date, any
    other field that its type is wrong, each naming the key."""

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            return self.construct_scalar(node)


_ConfigLoader.add_constructor("tag:yaml.org,2002:timestamp", _ConfigLoader.construct_yaml_timestamp)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 (a SafeLoader subclass)


def _deep_merge(base: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in delta.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """The file's own keys after those of the files it inherits from, farthest ancestor first."""
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file (see configs/)")
    if not path.is_file():
        raise ConfigError(f"config file {path} is a folder, not a YAML file; pass one of the files in it")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: `{INHERIT_KEY}` forms a cycle through {[str(p) for p in seen]}")
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _refuse_duplicate_keys(node, path)
        raw = _load_yaml(text) or {}
    except yaml.YAMLError as exc:
        where = str(exc).replace('"<unicode string>"', str(path))  # PyYAML names a string, not the file
        raise ConfigError(f"{path}: not valid YAML: {where}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    parent = raw.pop(INHERIT_KEY, None)
    if parent is None:
        return [raw]
    # Inheritance lets experiment configs hold only their deltas.
    parent_path = (path.parent / str(parent)).resolve()
    if not parent_path.is_file():  # named here, the config that inherits it is named too
        line = _key_line(node, INHERIT_KEY)
        what = "is a folder, not a YAML file" if parent_path.is_dir() else "does not exist"
        raise ConfigError(f"{path}{f', line {line}' if line else ''}: `{INHERIT_KEY}: {parent}` names {parent_path}, "
                          f"which {what}. Fix: point `{INHERIT_KEY}:` at an existing YAML file (a relative path is "
                          f"read from {path.parent}), or remove the line")
    return [*_read_layers(parent_path, seen + (path.resolve(),)), raw]


def _key_line(node: yaml.Node | None, key: str) -> int | None:
    """The line of a top-level key in a composed YAML document."""
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return key_node.start_mark.line + 1
    return None


_DATA_PATHS = ("interactions", "items")
_FALLBACKS = ("fallback_interactions", "fallback_items")


def _source_keys(layer: dict[str, Any]) -> set[str]:
    """The data.source keys one layer (a file's own keys, or one --set) writes."""
    data = layer.get("data")
    source = data.get("source") if isinstance(data, dict) else None
    return set(source) if isinstance(source, dict) else set()


def _drop_stale_fallbacks(raw: dict[str, Any], layers: list[dict[str, Any]]) -> dict[str, Any]:
    """`raw` without the bundled-sample fallbacks that a later layer's data path overrode.

    A fallback stands in only for the paths written beside it (default.yaml's data/users.csv + data/books.csv).
    A config that inherits, or a --set, that names data.source.interactions or .items is the user's own data,
    even when the path reads the same as the default: running on the sample because it is missing would train on
    200 synthetic books without an error. Such a layer keeps a fallback only by naming it too (a run's
    config.yaml names every key in one layer, so a run that trained on the sample reopens on it).
    """
    last: dict[str, int] = {}
    for index, layer in enumerate(layers):
        for key in _source_keys(layer):
            last[key] = index
    named = max((last.get(key, -1) for key in _DATA_PATHS), default=-1)
    data = raw.get("data")
    source = data.get("source") if isinstance(data, dict) else None
    if not isinstance(source, dict):
        return raw
    stale = [key for key in _FALLBACKS if source.get(key) is not None and last.get(key, -1) < named]
    if not stale:
        return raw
    return _deep_merge(raw, {"data": {"source": dict.fromkeys(stale)}})


def _refuse_duplicate_keys(node: yaml.Node | None, path: Path, where: tuple[str, ...] = ()) -> None:
    """A key given twice in one mapping: YAML keeps the last silently, so a second `training:` section would
    drop the first one's settings without a word."""
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, path, where)
    if not isinstance(node, yaml.MappingNode):
        return
    first_line: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
        if key is not None and key != "<<":  # `<<` merges are YAML's own way to repeat a mapping
            line = key_node.start_mark.line + 1
            if key in first_line:
                dotted = ".".join((*where, key))
                raise ConfigError(f"{path}: the key {dotted} appears twice, on lines {first_line[key]} and {line}; "
                                  f"YAML would keep only the second. Fix: merge them into one {key}: entry")
            first_line[key] = line
        _refuse_duplicate_keys(value_node, path, where if key is None else (*where, key))


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as YAML, so `10`, `true`, `[10, 20]` get their types)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. data.min_item_interactions=10)")
    key, _, value_text = text.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = _load_yaml(value_text) if value_text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML: {exc}") from exc
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    result = dict(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
    return result


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys of the section `loc` ends in (its last part is the unknown key); through dict[str, Section]
    fields (sweep.space.KEY) and optional sections too."""
    current: Any = model
    parts = list(loc[:-1])
    while parts:
        part = parts.pop(0)
        field = current.model_fields.get(str(part)) if _is_section(current) else None
        if field is None:
            return []
        annotation = _section_in(field.annotation)
        if annotation is None and get_origin(field.annotation) is dict and parts:
            annotation = _section_in(get_args(field.annotation)[1])
            parts.pop(0)  # the dict's own key (sweep.space's config key)
        if annotation is None:
            return []
        current = annotation
    return sorted(current.model_fields) if _is_section(current) else []


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _section_in(annotation: Any) -> type[BaseModel] | None:
    """`annotation` itself, or the one model of an optional/union one, when it is a config section."""
    if _is_section(annotation):
        return annotation
    sections = [a for a in get_args(annotation) if _is_section(a)] if get_origin(annotation) is not dict else []
    return sections[0] if len(sections) == 1 else None


def explain_validation_error(exc: ValidationError, source: str, overrides: list[str] | None = None) -> ConfigError:
    return explain_errors(exc.errors(), source, overrides)


def _list_hint(dotted: str, loc: tuple[Any, ...], value: Any, overrides: list[str]) -> str:
    """How to write a list where a single value was given: `--set evaluation.ks=10` is one number to YAML.
    The example is the key's default list when it has one, else the value given, as a list."""
    default: Any = BooktowerConfig().model_dump(mode="json")
    for part in loc:
        default = default.get(str(part)) if isinstance(default, dict) else None
    example = json.dumps(default if isinstance(default, list) and default else [value], separators=(",", ":"))
    if any(parse_override(text)[0] == [str(p) for p in loc] for text in overrides if "=" in text):
        return f"; write a list: --set '{dotted}={example}'"
    return f"; write a list: {dotted.rpartition('.')[2]}: {example}"


def explain_errors(errors: list[Any], source: str, overrides: list[str] | None = None) -> ConfigError:
    """Pydantic's errors as one ConfigError: each names its dotted key; an unknown key gets the near match."""
    lines = [f"{source}: the config is not valid:"]
    for err in errors:
        loc = tuple(err["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(BooktowerConfig, loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" (did you mean {'.'.join(str(p) for p in loc[:-1] + (close[0],))}?)" if close else ""
            lines.append(f"  - {dotted}: unknown key{hint}; allowed here: {', '.join(allowed)}")
        elif isinstance(err.get("input"), dict):  # a check over a whole section: its message names the keys
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"  - {message}" if not loc or message.startswith(dotted) else f"  - {dotted}: {message}")
        else:  # one key: our validators' messages name it (and often the value) already
            message = err["msg"].removeprefix("Value error, ")
            head = message if message.startswith(dotted) else f"{dotted}: {message}"
            shown = repr(err.get("input")) in message
            hint = _list_hint(dotted, loc, err.get("input"), overrides or []) if err["type"] == "list_type" else ""
            lines.append((f"  - {head}" if shown else f"  - {head} (got {err.get('input')!r})") + hint)
    return ConfigError("\n".join(lines))


def load_config(path: Path | str | None, overrides: list[str] | None = None) -> BooktowerConfig:
    """Read, merge and validate a config. `path=None` gives the defaults (plus overrides)."""
    overrides = overrides or []
    layers = _read_layers(Path(path)) if path is not None else []
    raw: dict[str, Any] = {}
    for layer in layers:
        raw = _deep_merge(raw, layer)
    raw = apply_overrides(raw, overrides)
    raw = _drop_stale_fallbacks(raw, [*layers, *(apply_overrides({}, [text]) for text in overrides)])
    source = str(path) if path is not None else "(defaults)"
    if overrides:
        source += " with --set " + " --set ".join(overrides)
    try:
        return BooktowerConfig.model_validate(raw)
    except ValidationError as exc:
        raise explain_validation_error(exc, source, overrides) from None


def dump_config(config: BooktowerConfig) -> str:
    """The resolved config as YAML (what every run writes beside its artefacts)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
