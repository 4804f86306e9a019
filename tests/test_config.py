"""params.yaml validation: the repo's files load, typos and wrong types name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from glaciermap.config import (Params, PatchesConfig, SensorsConfig, deep_merge, load_params,
                               parse_params)
from glaciermap.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _error(raw: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parse_params(raw, source="test-params.yaml")
    assert err.value.message.startswith("test-params.yaml: ")
    return err.value.message


def test_repo_params_load():
    params = load_params(ROOT / "params.yaml")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert isinstance(params, Params)
    # every value written in the file arrives (nothing silently dropped or renamed)
    assert params.model_dump(mode="json", include=set(raw)) == deep_merge(
        params.model_dump(mode="json", include=set(raw)), raw)
    assert params.sensors.groups == raw["sensors"]["groups"]
    assert params.data.resolution_m == raw["data"]["resolution_m"]


@pytest.mark.parametrize("profile", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_experiment_profiles_apply_over_params(profile):
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    merged = deep_merge(base, yaml.safe_load(profile.read_text()))
    params = parse_params(merged, source=profile)
    assert params.folds.k == merged["folds"]["k"]


def test_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("")
    assert load_params(path) == Params()


@pytest.mark.parametrize("raw, key", [
    ({"train": {"lrr": 0.1}}, "train.lrr"),
    ({"train": {"seed": 1}}, "train.seed"),  # replaced by train.seeds (ensemble members)
    ({"infer": {"ensemble": True}}, "infer.ensemble"),  # removed: it mapped glaciers with models trained on them
    ({"trian": {"lr": 0.1}}, "trian"),
    ({"data": {"resolution": 10}}, "data.resolution"),
    ({"models": {"unet": {"name": "unet", "encodr": "resnet18"}}}, "models.unet.encodr"),
])
def test_unknown_key_is_named(raw, key):
    msg = _error(raw)
    assert f"unknown key '{key}'" in msg


@pytest.mark.parametrize("raw, key", [
    ({"train": {"max_epochs": "many"}}, "train.max_epochs"),
    ({"train": {"lr": -1}}, "train.lr"),
    ({"data": {"resolution_m": [10]}}, "data.resolution_m"),
    ({"folds": {"k": 1}}, "folds.k"),
    ({"patches": {"size": 100}}, "patches.size"),
    ({"train": {"loss": "hinge"}}, "train.loss"),
    ({"train": {"seeds": []}}, "train.seeds"),
    ({"train": {"seeds": [0, 0]}}, "train.seeds"),
    ({"train": {"seeds": [-1]}}, "train.seeds"),
    ({"sensors": {"groups": {"optical": "B4"}}}, "sensors.groups.optical"),
])
def test_wrong_type_or_value_names_the_key(raw, key):
    msg = _error(raw)
    assert f"'{key}'" in msg


def test_train_models_must_be_defined():
    msg = _error({"train": {"models": ["unet", "segformer"]}})
    assert "train.models" in msg and "'segformer'" in msg


def test_cross_references_are_checked():
    assert "'optical_radar'" in _error({"train": {"sensor_sets": ["optical_dem", "optical_radar"]}})
    assert "train.folds [5]" in _error({"train": {"folds": [0, 5]}})
    assert "infer" in _error({"infer": {"sensor_set": "optical"}})  # not trained
    msg = _error({"sensors": {"sets": {"optical_lidar": ["optical", "lidar"]}}})
    assert "'optical_lidar'" in msg and "lidar" in msg
    # the dhdt group is the region's dh/dt map: one band, `dhdt`
    msg = _error({"sensors": {"groups": {"optical": ["B4"], "dhdt": ["dh_dt"]}, "sets": {"optical": ["optical"]}}})
    assert "sensor group 'dhdt' is the one band ['dhdt']" in msg and "['dh_dt']" in msg


def test_channels_sum_the_groups():
    sensors = SensorsConfig()
    for name, groups in sensors.sets.items():
        channels = sensors.channels(name)
        assert list(channels) == groups  # ordered as the set lists them
        assert channels == {g: len(sensors.groups[g]) for g in groups}
    full = sensors.channels("optical_sar_dem")
    assert sum(full.values()) == sum(len(b) for b in sensors.groups.values())
    custom = SensorsConfig(groups={"optical": ["B4", "B8"], "dem": ["dem"]}, sets={"x": ["dem", "optical"]})
    assert custom.channels("x") == {"dem": 1, "optical": 2}
    assert custom.resolve("x") == {"dem": ["dem"], "optical": ["B4", "B8"]}


def test_unknown_sensor_set():
    with pytest.raises(ConfigError, match="unknown sensor set 'lidar'") as err:
        SensorsConfig().channels("lidar")
    assert "optical_sar_dem" in err.value.message  # lists the valid ones


def test_load_params_file_errors(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="file not found") as err:
        load_params(missing)
    assert str(missing) in err.value.message
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_params(bad)
    assert str(bad) in err.value.message
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_params(listing)
    typo = tmp_path / "typo.yaml"
    typo.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_params(typo)
    assert err.value.message.startswith(f"{typo}: unknown key 'train.lrr'")


def test_configs_are_frozen_and_strict():
    from pydantic import ValidationError

    cfg = PatchesConfig()
    with pytest.raises(ValidationError) as frozen:
        cfg.size = 64  # frozen: a config cannot drift after validation
    assert [(e["type"], e["loc"]) for e in frozen.value.errors()] == [("frozen_instance", ("size",))]
    assert cfg.size == PatchesConfig().size  # unchanged
    with pytest.raises(ValidationError) as extra:
        PatchesConfig(sizee=64)
    assert [(e["type"], e["loc"]) for e in extra.value.errors()] == [("extra_forbidden", ("sizee",))]


def test_deep_merge():
    base = {"a": {"x": 1, "y": 2}, "b": [1, 2], "c": 3}
    merged = deep_merge(base, {"a": {"y": 20, "z": 30}, "b": [9]})
    assert merged == {"a": {"x": 1, "y": 20, "z": 30}, "b": [9], "c": 3}
    assert base == {"a": {"x": 1, "y": 2}, "b": [1, 2], "c": 3}  # not modified


def test_reading_params_loads_no_stage_logic(tmp_path):
    """Parsing params.yaml is cheap: no torch, GDAL, geodata stack, scipy or simulator behind it."""
    import subprocess
    import sys

    code = ("import sys, glaciermap.config as c; c.load_params(sys.argv[1]); "
            "print(sorted(m for m in ('torch', 'rasterio', 'geopandas', 'scipy', 'lightning', 'mlflow', "
            "'glaciermap.data.simulate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "params.yaml")], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_a_key_written_twice_is_an_error_naming_it(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: 0.001\n  max_epochs: 3\n  lr: 0.01\n")
    with pytest.raises(ConfigError, match=r"key 'lr' is written twice \(lines 2 and 4\)"):
        load_params(path)
