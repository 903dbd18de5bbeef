"""Typed dataclass configs loaded from YAML, with ``key.sub=value`` overrides.

Every recipe describes its settings as (nested) dataclasses. ``load_config`` builds one from a YAML
file plus command-line overrides, converts every value to its annotated type, and runs each dataclass's
``validate()``. All problems are collected and raised together as one :class:`ConfigError`, each with
its dotted key path, so a user fixes a config in one round trip instead of one error per run.

A dataclass opts into semantic checks by defining ``validate(self) -> list[str]``; each returned
message starts with the field name (``"lr: must be > 0"``) and is prefixed with the parent path here.

A root dataclass renames a key without breaking old configs and commands by listing it in ``RENAMED``
(old dotted key -> new dotted key, or -> ``(new key, convert)`` when the old value needs translating):
the old key still works and warns once, naming the new one (see :func:`apply_renames`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from ski_lvlm.utils.errors import SkiLvlmError

T = TypeVar("T")

__all__ = ["ConfigError", "load_config", "from_dict", "to_dict", "save_config", "parse_overrides", "apply_renames"]


class ConfigError(SkiLvlmError, ValueError):
    """One or more config problems; ``problems`` holds every message, each with its key path."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        head = f"invalid config{f' {source}' if source else ''} ({len(problems)} problem{'s' * (len(problems) != 1)}):"
        super().__init__("\n".join([head] + [f"  - {p}" for p in problems]))


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=[1,2]"]`` into a nested dict; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    problems = []
    for item in overrides:
        if "=" not in item:
            problems.append(f"override {item!r}: expected key=value (e.g. optim.lr=1e-4)")
            continue
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            problems.append(f"override {item!r}: empty key segment")
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append(f"override {item!r}: {part} is both a value and a section")
                break
        else:
            node[parts[-1]] = value
    if problems:
        raise ConfigError(problems, "(command-line overrides)")
    return out


def _deep_merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = _deep_merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def _read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"config file not found: {path}"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise ConfigError([f"{where}: YAML syntax error: {getattr(e, 'problem', e)}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: top level must be a mapping, got {type(data).__name__}"])
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build ``cls`` from an optional YAML file and ``key.sub=value`` overrides; raise one ConfigError."""
    data = _read_yaml(path) if path else {}
    renamed = getattr(cls, "RENAMED", None)
    problems: list[str] = []
    if renamed:  # per source, so an old name on the command line still overrides the new one in the YAML
        data = apply_renames(data, renamed, problems)
    if overrides:
        update = parse_overrides(overrides)
        data = _deep_merge(data, apply_renames(update, renamed, problems) if renamed else update)
    if problems:
        raise ConfigError(problems, str(path) if path else None)
    return from_dict(cls, data, source=str(path) if path else None)


def apply_renames(data: dict, renamed: dict[str, str | tuple[str, Callable[[Any], Any]]],
                  problems: list[str]) -> dict:
    """Move deprecated keys of ``data`` to their new dotted paths, warning once per old name.

    Renames live next to the config they belong to (a recipe's root dataclass ``RENAMED``), so old YAML
    files and old ``key=value`` commands keep working while every saved config uses the new names.
    Giving both the old and the new key is a problem (which one was meant is unknowable).
    """
    data = copy.deepcopy(data)  # the caller's dict stays as it was
    for old, spec in renamed.items():
        new, convert = (spec, None) if isinstance(spec, str) else spec
        *old_parents, old_leaf = old.split(".")
        node = data
        for part in old_parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or old_leaf not in node:
            continue
        value = node.pop(old_leaf)
        *new_parents, new_leaf = new.split(".")
        target = data
        for part in new_parents:
            if not isinstance(target.get(part), dict):
                target[part] = {} if target.get(part) is None else target[part]
            target = target[part]
        if not isinstance(target, dict):
            problems.append(f"{old}: renamed to {new}, but {'.'.join(new_parents)} is not a section")
        elif new_leaf in target:
            problems.append(f"{old}: renamed to {new}; give only {new} (both were given)")
        else:
            target[new_leaf] = convert(value) if convert is not None else value
            warnings.warn(f"config key {old!r} is deprecated: use {new!r} (the old name still works for now)",
                          FutureWarning, stacklevel=3)
    return data


def from_dict(cls: type[T], data: dict, source: str | None = None) -> T:
    problems: list[str] = []
    renamed = getattr(cls, "RENAMED", None)
    if renamed:
        data = apply_renames(data or {}, renamed, problems)
        if problems:
            raise ConfigError(problems, source)
    obj = _build(cls, data, "", problems)
    if not problems:
        _validate_tree(obj, "", problems)
    if problems:
        raise ConfigError(problems, source)
    return obj


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _build(cls: type, data: Any, prefix: str, problems: list[str]) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{prefix or '<root>'}: expected a mapping for {cls.__name__}, got {data!r}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{_join(prefix, str(key))}: unknown key{hint}")
            continue
        kwargs[key] = _convert(hints[key], value, _join(prefix, key), problems)
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    for n in missing:
        problems.append(f"{_join(prefix, n)}: required")
    if problems:
        return None
    return cls(**kwargs)


_BAD = object()


def _convert(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, problems)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            sub: list[str] = []
            out = _convert(arg, value, path, sub)
            if not sub:
                return out
        problems.append(f"{path}: expected {_type_name(tp)}, got {value!r}")
        return _BAD
    if origin is Literal:
        if value in args:
            return value
        problems.append(f"{path}: must be one of {', '.join(repr(a) for a in args)}; got {value!r}")
        return _BAD
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            problems.append(f"{path}: expected a list, got {value!r}")
            return _BAD
        item_tp = args[0] if args else Any
        items = [_convert(item_tp, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {value!r}")
            return _BAD
        val_tp = args[1] if len(args) == 2 else Any
        return {k: _convert(val_tp, v, f"{path}.{k}", problems) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        problems.append(f"{path}: expected true/false, got {value!r}")
        return _BAD
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        problems.append(f"{path}: expected an integer, got {value!r}")
        return _BAD
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        problems.append(f"{path}: expected a number, got {value!r}")
        return _BAD
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        problems.append(f"{path}: expected a string, got {value!r}")
        return _BAD
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _validate_tree(obj: Any, prefix: str, problems: list[str]) -> None:
    if not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        child = getattr(obj, f.name)
        if dataclasses.is_dataclass(child):
            _validate_tree(child, _join(prefix, f.name), problems)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        for msg in validate() or []:
            problems.append(_join(prefix, msg) if prefix else msg)


def to_dict(obj: Any) -> Any:
    """Plain-data copy of a config (for saving next to checkpoints and for reports)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def save_config(obj: Any, path: str | Path, header: str | None = None) -> None:
    from ski_lvlm.utils.io import atomic_write_text

    text = yaml.safe_dump(to_dict(obj), sort_keys=False)
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    atomic_write_text(path, text)
