"""Which params a command reads, for the test that checks each DVC stage lists them; inert unless
GLACIERMAP_TEST_PARAMS_TRACE names a file.

A stage's `params:` in dvc.yaml are what `dvc repro` watches: a command that reads a key its
stage does not list keeps its old outputs after that key changes, and `dvc status` still says all
is up to date. With the variable set, `glaciermap` records every leaf setting the command reads
after params.yaml was validated (the validation's own cross-checks are not the command's reads)
and appends one JSON line to the file when it ends::

    {"argv": ["train", "--model", "unet", ...], "read": ["patches.size", "train.lr", ...]}

Keys are dotted paths as in params.yaml (`models.unet.encoder`). Reads through `model_dump()`
bypass attribute access and are not seen, nor reads in DataLoader worker processes (none on a CPU,
where `patches.num_workers: auto` is 0; the main process reads the same settings to build them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from glaciermap.config.base import StrictModel

TRACE_VAR = "GLACIERMAP_TEST_PARAMS_TRACE"


def _paths(model: StrictModel, prefix: str, by_id: dict[int, tuple[str, StrictModel]],
           by_class: dict[type, str | None]) -> None:
    """Each sub-model's dotted path, by object (held, so that its id is not reused), and by class
    for the sections outside mappings (None for a class met at two paths)."""
    by_id[id(model)] = prefix, model
    for name in type(model).model_fields:
        value = object.__getattribute__(model, name)
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for key, item in items:
            if isinstance(item, StrictModel):
                path = f"{prefix}{name}" if key is None else f"{prefix}{name}.{key}"
                if key is None:
                    by_class[type(item)] = path if by_class.get(type(item), path) == path else None
                _paths(item, path + ".", by_id, by_class)


@contextmanager
def trace_reads(params: StrictModel, argv: list[str]) -> Iterator[None]:
    """Record the leaf settings of `params` read inside the block (nothing unless TRACE_VAR is set).

    Copies validated inside the block are followed: the whole params (`updated(params, infer=cfg)`)
    and a section that lives at one path (`updated(params.infer, ...)`). Reads made while a config
    model validates (its cross-checks) are not recorded, nor reads of config objects from elsewhere
    (a model bundle's stored settings: `models.<name>` sections sit in a mapping, so copies of them
    are never followed)."""
    out = os.environ.get(TRACE_VAR)
    if not out:
        yield
        return
    root = type(params)
    by_id: dict[int, tuple[str, StrictModel]] = {}
    by_class: dict[type, str | None] = {}
    read: set[str] = set()
    validating = [0]
    _paths(params, "", by_id, by_class)
    original_validate, original_init = StrictModel.model_validate.__func__, StrictModel.__init__

    def recording(self, name: str):
        value = object.__getattribute__(self, name)
        if validating[0] or name not in type(self).model_fields:
            return value
        if id(self) in by_id and not _is_section(value):
            read.add(by_id[id(self)][0] + name)
        return value

    def validate(cls, *args, **kwargs):
        validating[0] += 1
        try:
            copy = original_validate(cls, *args, **kwargs)
        finally:
            validating[0] -= 1
        if id(copy) not in by_id and (cls is root or by_class.get(cls)):
            _paths(copy, "" if cls is root else by_class[cls] + ".", by_id, {})
        return copy

    def init(self, *args, **kwargs):
        validating[0] += 1
        try:
            original_init(self, *args, **kwargs)
        finally:
            validating[0] -= 1

    StrictModel.__getattribute__, StrictModel.__init__ = recording, init
    StrictModel.model_validate = classmethod(validate)
    try:
        yield
    finally:  # back to the inherited ones
        del StrictModel.__getattribute__, StrictModel.__init__, StrictModel.model_validate
        with Path(out).open("a") as f:
            f.write(json.dumps({"argv": argv, "read": sorted(read)}) + "\n")


def _is_section(value) -> bool:
    """A sub-model, or a mapping of them (`models`): not a leaf setting."""
    return isinstance(value, StrictModel) or (isinstance(value, dict) and bool(value)
                                              and all(isinstance(v, StrictModel) for v in value.values()))
