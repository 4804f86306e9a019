"""Base of every typed config object, and the one YAML reader (params.yaml is validated once, at the edge)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from glaciermap.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Frozen pydantic model that rejects unknown keys, so a typo is an error naming the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """pydantic's errors as one line: `unknown key 'a.b'; 'c': must be > 0`."""
    lines = []
    for e in err.errors():
        key = prefix + ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"unknown key '{key}'" if e["type"] == "extra_forbidden" else f"'{key}': {e['msg']}")
    return "; ".join(lines)


def updated(model: M, *, source: str | Path | None = None, section: str = "", **overrides: Any) -> M:
    """A copy of `model` with `overrides` applied and validated again (pydantic's `model_copy(update=)`
    skips validation, so a command-line override could smuggle in a value params.yaml would refuse)."""
    try:
        return type(model).model_validate({**model.model_dump(exclude_unset=True), **overrides})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"{section}." if section else ""), path=source) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping key written twice (YAML lets the last one win silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"key {key!r} is written twice (lines {seen[key]} and {key_node.start_mark.line + 1})",
                              path=key_node.start_mark.name, hint="keep one of them")
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (empty file: {}); a duplicate key is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("file not found" if not path.exists() else "not a file", path=path,
                          hint="run from the project root or pass --params")
    try:
        with path.open() as fh:
            raw = yaml.load(fh, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML: {err}", path=path, keep_lines=True) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read: {err}", path=path) from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError("top level must be a mapping of sections", path=path)
    return raw or {}
