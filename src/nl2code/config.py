"""Typed configuration: dataclass trees loaded from YAML with dotted command-line overrides.

Unknown keys and wrong types are errors naming the key and the file. Nothing in a config is ever
executed: values are parsed with ``yaml.safe_load`` and checked against the dataclass annotations.

A field can be *polymorphic*: annotate it with the base type ``Any`` and put
``metadata={"registry": NAME}`` on it; its YAML mapping then carries a ``kind`` key that selects the
dataclass registered under NAME with :func:`register`.
"""

from __future__ import annotations

import dataclasses
import re
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")

_REGISTRIES: dict[str, dict[str, type]] = {}


class ConfigError(ValueError):
    """A configuration problem; the message names the file and the dotted key."""


def register(registry: str, kind: str):
    """Class decorator: make a config dataclass selectable by ``kind`` in a polymorphic field."""

    def deco(cls: type[T]) -> type[T]:
        table = _REGISTRIES.setdefault(registry, {})
        if kind in table and table[kind] is not cls:
            raise ValueError(f"{registry} kind {kind!r} registered twice")
        table[kind] = cls
        cls.kind = kind  # type: ignore[attr-defined]
        return cls

    return deco


def register_kinds(registry: str, kinds: dict[str, type]) -> None:
    """Make each config class of ``kinds`` (kind -> class) selectable by its kind, as :func:`register` does."""
    for kind, cls in kinds.items():
        register(registry, kind)(cls)


def registry_kinds(registry: str) -> dict[str, type]:
    return dict(_REGISTRIES.get(registry, {}))


def option(default: Any, help: str, **metadata: Any) -> Any:
    """A config field with a default and a ``help`` string (``nl2code train --help`` lists it)."""
    if isinstance(default, dict | list):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help, **metadata})
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def required(help: str, **metadata: Any) -> Any:
    """A config field without a default."""
    return dataclasses.field(metadata={"help": help, **metadata})


def _where(source: str, key: str) -> str:
    return f"{source}: {key}" if key else source


# YAML 1.1 reads these words as booleans; an option whose choices are strings means the word.
_BOOL_WORDS = {True: ("on", "yes", "true", "y"), False: ("off", "no", "false", "n")}


def _bool_word(value: bool, choices: tuple) -> Any:
    """The string choice a YAML boolean was written as (``progress: off``), else ``value`` unchanged."""
    return next((c for c in choices if isinstance(c, str) and c.lower() in _BOOL_WORDS[value]), value)


def _convert(value: Any, tp: Any, source: str, key: str) -> Any:
    """Check ``value`` against annotation ``tp`` and convert it (int->float, list->tuple...)."""
    where = _where(source, key)
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if isinstance(value, bool):
            value = _bool_word(value, choices)
        if value not in choices:
            raise ConfigError(f"{where}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where}: must not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, source, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches no type of {tp}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        out = [_convert(v, item, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        kt, vt = get_args(tp) or (Any, Any)
        return {
            _convert(k, kt, source, f"{key}.{k}"): _convert(v, vt, source, f"{key}.{k}")
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: unsupported type {tp} for value {value!r}")


def from_dict(cls: type[T], data: Any, source: str = "<config>", prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, strictly: unknown keys and bad types raise ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{_where(source, prefix)}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise ConfigError(f"{source}: unknown key '{key}' (allowed: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: missing required key '{key}'")
            continue
        reg = f.metadata.get("registry")
        if reg is not None:
            kwargs[name] = _from_registry(reg, data[name], source, key)
        else:
            kwargs[name] = _convert(data[name], hints[name], source, key)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{_where(source, prefix)}: {e}") from e


def _from_registry(registry: str, value: Any, source: str, key: str) -> Any:
    if value is None:
        return None
    if dataclasses.is_dataclass(value):
        return value
    if not isinstance(value, dict) or "kind" not in value:
        raise ConfigError(f"{source}: '{key}' needs a 'kind' key")
    table = _REGISTRIES.get(registry, {})
    kind = value["kind"]
    if kind not in table:
        raise ConfigError(f"{source}: {key}.kind: unknown {registry} kind {kind!r} (known: {sorted(table)})")
    rest = {k: v for k, v in value.items() if k != "kind"}
    return from_dict(table[kind], rest, source, key)


def to_dict(obj: Any) -> Any:
    """Plain YAML-safe structure of a config tree (polymorphic fields keep their ``kind``)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        kind = getattr(type(obj), "kind", None)
        if isinstance(kind, str):
            out["kind"] = kind
        for f in dataclasses.fields(obj):
            out[f.name] = to_dict(getattr(obj, f.name))
        return out
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.lr=3e-4`` -> (["train", "lr"], 0.0003). The value is parsed as YAML (safe)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    parts = re.sub(r"\[(\d+)\]", r".\1", key.strip()).split(".")  # stages[0].x -> stages.0.x
    if not all(parts):
        raise ConfigError(f"override {text!r}: bad key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: cannot parse value: {e}") from e
    # YAML 1.1 reads 3e-4 as a string; accept plain float syntax too.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else value
        except ValueError:
            pass
    return parts, value


def _list_item(items: list, part: str, text: str) -> dict:
    """The item of a list section (``stages``) an override names: by index (``stages.0``) or by its
    ``name`` (``stages.finetune``)."""
    if part.isdigit():
        if int(part) >= len(items):
            raise ConfigError(f"override {text!r}: index {part} is out of range (the list has {len(items)} items)")
        item = items[int(part)]
    else:
        named = [it for it in items if isinstance(it, dict) and it.get("name") == part]
        if not named:
            names = [it.get("name") for it in items if isinstance(it, dict)]
            raise ConfigError(f"override {text!r}: no item named {part!r} (names: {', '.join(map(str, names))})")
        item = named[0]
    if not isinstance(item, dict):
        raise ConfigError(f"override {text!r}: item {part!r} is not a section")
    return item


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply dotted overrides to a raw mapping (before validation, so unknown keys still fail).

    A list of sections is entered by index or by an item's ``name``: ``stages.finetune.train.lr=1e-3``,
    ``stages.1.train.lr=1e-3`` and ``stages[1].train.lr=1e-3`` are the same override.
    """
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = data
        for p in parts[:-1]:
            if isinstance(node, list):
                node = _list_item(node, p, text)
                continue
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict | list):
                raise ConfigError(f"override {text!r}: '{p}' is not a section")
            node = child
        if isinstance(node, list):
            raise ConfigError(f"override {text!r}: a whole list item cannot be replaced; name one of its keys")
        node[parts[-1]] = value
    return data


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The mapping of a YAML config file. A top-level ``extends: BASE.yaml`` (a path relative to this file) starts
    from BASE's mapping: this file's sections are merged into it key by key, its other values (lists included)
    replace BASE's; BASE may extend another file in turn."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{line} invalid YAML: {getattr(e, 'problem', e)}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    if "extends" not in data:
        return data
    base = data.pop("extends")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: extends: expected the path of a base config, got {base!r}")
    seen = (*_seen, path.resolve())
    base_path = path.parent / base
    if not base_path.is_file():
        raise ConfigError(f"{path}: extends {base}: no such file ({base_path})")
    if base_path.resolve() in seen:
        raise ConfigError(f"{path}: extends {base}: a cycle ({' -> '.join(p.name for p in seen)} -> {base_path.name})")
    return _merged(read_yaml(base_path, seen), data)


def _merged(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged in: mappings key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both else value
    return out


def load(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """Load dataclass ``cls`` from a YAML file (or defaults when ``path`` is None) plus overrides."""
    data = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    if overrides:
        data = apply_overrides(data, overrides)
        source += " (with overrides)"
    return from_dict(cls, data, source)


def save(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from nl2code.utils.io import atomic_write

    atomic_write(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


__all__ = [
    "ConfigError",
    "apply_overrides",
    "from_dict",
    "load",
    "option",
    "parse_override",
    "read_yaml",
    "register",
    "register_kinds",
    "registry_kinds",
    "required",
    "save",
    "to_dict",
]
