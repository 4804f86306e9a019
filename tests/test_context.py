"""Context tiles: the region beyond the glacier cubes, for training patches of far-off ground."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from rasterio.crs import CRS
from shapely.geometry import box

from glaciermap.config import PatchesConfig, SensorsConfig, updated
from glaciermap.data.context import context_grids
from glaciermap.data.cubes import CONTEXT_FILE, read_context, read_cube, read_index
from glaciermap.data.datamodule import GlacierDataModule
from glaciermap.data.ingest import ingest_region
from glaciermap.errors import ConfigError, InputDataError

from conftest import DATA

SENSORS = SensorsConfig()
TILE_M = 1280.0
SIZE = 64
PATCHES = PatchesConfig(size=SIZE, eval_stride=48, samples_per_epoch=32, batch_size=4, augment=False)


@pytest.fixture(scope="module")
def context_cubes(raw_region, tmp_path_factory):
    out = tmp_path_factory.mktemp("context") / "cubes"
    ingest_region(raw_region, out, DATA.model_copy(update={"context_tile_m": TILE_M}), SENSORS, progress=False)
    return out


def test_tiles_cover_the_area_beyond_the_boxes_and_are_clipped_to_it():
    crs = CRS.from_epsg(32632)
    area = box(0, 0, 1000, 700)
    boxes = box(0, 0, 400, 700)  # the western 400 m is glacier cubes
    tiles = dict(context_grids(area, boxes, 300, 10, crs))
    # columns start at x 0, 300, 600, 900; rows at y 700, 400, 100: column 0 lies wholly in the boxes
    assert sorted(tiles) == [f"context-r{r:02d}c{c:02d}" for r in range(3) for c in (1, 2, 3)]
    assert (tiles["context-r00c01"].width, tiles["context-r00c01"].height) == (30, 30)
    assert tiles["context-r00c01"].bounds == (300, 400, 600, 700)
    assert (tiles["context-r02c03"].width, tiles["context-r02c03"].height) == (10, 10)  # clipped at the edges
    assert tiles["context-r02c03"].bounds == (900, 0, 1000, 100)
    # a tile with less than the minimum outside the boxes is not kept
    assert "context-r00c01" not in dict(context_grids(area, box(0, 0, 590, 700), 300, 10, crs))


def test_no_valid_tile_pixel_lies_in_any_glacier_cube(context_cubes):
    """The leak guard: every fold trains on every tile, so no tile pixel that teaches may be a pixel
    of any glacier's cube (a test glacier's among them), and none is ice."""
    tiles, index = read_context(context_cubes), read_index(context_cubes)
    assert len(tiles) >= 2 and set(tiles.epoch) <= set(index[index.role == "inventory"].epoch)
    boxes = [read_cube(context_cubes / p).grid.bounds for p in index.path]
    for row in tiles.itertuples():
        cube = read_cube(context_cubes / row.path)
        valid = cube.mask_invalid == 0
        assert valid.any() and cube.mask_glacier.sum() == 0
        assert not cube.mask_all[valid].any(), row.tile_id
        assert np.isclose(valid.mean(), row.usable_fraction)
        xs, ys = cube.grid.xy_coords()
        x, y = np.meshgrid(xs, ys)
        for left, bottom, right, top in boxes:
            inside = (x > left) & (x < right) & (y > bottom) & (y < top)
            assert not (valid & inside).any(), (row.tile_id, (left, bottom, right, top))


def test_glacier_cubes_do_not_change_with_context_tiles(context_cubes, cube_index):
    pd.testing.assert_frame_equal(read_index(context_cubes), cube_index)


def test_context_centred_patches_come_from_the_tiles(context_cubes, folds):
    tiles = {tuple(np.float32([c.attrs["lon"], c.attrs["lat"]]))
             for c in (read_cube(context_cubes / p) for p in read_context(context_cubes).path)}

    def train_set(**patches):
        dm = GlacierDataModule(context_cubes, folds[0], SENSORS.resolve("optical_sar_dem"),
                               updated(PATCHES, **patches))
        dm.setup("fit")
        return dm.train_set

    ctx = train_set(context_centres=1.0)
    centre = SIZE // 2
    for i in range(len(ctx)):
        s = ctx[i]
        assert tuple(s["location"].numpy()) in tiles, i
        assert s["valid"][0, centre, centre] and s["target"][0, centre, centre] == 0, i
    plain = train_set()
    assert not any(tuple(plain[i]["location"].numpy()) in tiles for i in range(len(plain)))
    # a share of 0 draws nothing extra: the same patches as before context tiles existed
    zero = train_set(context_centres=0.0)
    assert all(torch.equal(plain[i]["image"], zero[i]["image"]) for i in range(6))
    half = train_set(context_centres=0.5)
    n = sum(tuple(half[i]["location"].numpy()) in tiles for i in range(len(half)))
    assert 0 < n < len(half)


def test_context_centres_without_tiles_is_a_config_error(cubes_dir, folds):
    dm = GlacierDataModule(cubes_dir, folds[0], SENSORS.resolve("optical"), updated(PATCHES, context_centres=0.2))
    with pytest.raises(ConfigError, match="no context tiles") as err:
        dm.setup("fit")
    assert "data.context_tile_m" in err.value.hint


def test_centre_shares_count_the_context_share():
    with pytest.raises(ValueError, match="context_centres must be at most 1"):
        PatchesConfig(background_centres=0.5, context_centres=0.6)


def test_a_corrupt_context_list_is_a_clear_error(context_cubes, tmp_path):
    (tmp_path / CONTEXT_FILE).write_bytes(b"")
    with pytest.raises(InputDataError, match="context tile list"):
        read_context(tmp_path)
    assert read_context(tmp_path / "none").empty  # no list: no tiles (adapters, older cubes)
