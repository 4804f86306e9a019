"""glaciermap.config.trace: which settings a command reads (what test_pipeline checks dvc.yaml's params against)."""

from __future__ import annotations

import json

from glaciermap.config import ModelConfig, Params, StrictModel, updated
from glaciermap.config.trace import TRACE_VAR, trace_reads


def reads(tmp_path, monkeypatch, body) -> list[str]:
    out = tmp_path / "trace.jsonl"
    monkeypatch.setenv(TRACE_VAR, str(out))
    params = Params()
    with trace_reads(params, ["train", "--fold", "0"]):
        body(params)
    (line,) = out.read_text().splitlines()
    entry = json.loads(line)
    assert entry["argv"] == ["train", "--fold", "0"]
    return entry["read"]


def test_leaf_settings_are_recorded_by_their_params_yaml_path(tmp_path, monkeypatch):
    def body(p):
        assert p.train.lr > 0 and p.models["unet"].encoder and p.models["unet"].glavitu.depth
        p.data  # a section: not a setting

    assert reads(tmp_path, monkeypatch, body) == ["models.unet.encoder", "models.unet.glavitu.depth", "train.lr"]


def test_validated_copies_are_followed_and_validation_is_not_a_read(tmp_path, monkeypatch):
    def body(p):
        cfg = updated(p.infer, section="infer", tta=True)  # validation reads nothing the command reads
        q = updated(p, infer=cfg)  # Params' cross-checks read train.models, sensors.sets, tune.*...
        assert cfg.tta and q.train.max_epochs and q.infer.model == "unet"

    assert reads(tmp_path, monkeypatch, body) == ["infer.model", "infer.tta", "train.max_epochs"]


def test_config_objects_from_elsewhere_are_not_params(tmp_path, monkeypatch):
    """A model bundle's stored settings are validated into a ModelConfig: not a params.yaml read."""
    assert reads(tmp_path, monkeypatch, lambda p: ModelConfig.model_validate({"name": "unet"}).encoder) == []


def test_inert_without_the_variable_and_restored_after(tmp_path, monkeypatch):
    monkeypatch.delenv(TRACE_VAR, raising=False)
    with trace_reads(Params(), ["x"]):
        assert "__getattribute__" not in StrictModel.__dict__
    assert reads(tmp_path, monkeypatch, lambda p: p.train.lr) == ["train.lr"]
    assert not {"__getattribute__", "__init__", "model_validate"} & set(StrictModel.__dict__)
