"""Patches: glacier-centred training patches, sensor sets, valid masks, grid coverage, epochs."""

from __future__ import annotations

import dataclasses
import functools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from glaciermap.config import PatchesConfig, SensorsConfig, updated
from glaciermap.data.cubes import read_cube, read_index
from glaciermap.data.datamodule import EpochSampler, GlacierDataModule
from glaciermap.data.windows import window_starts
from glaciermap.data.ingest import ingest_region
from glaciermap.errors import ConfigError

from conftest import DATA, without_truth

SENSORS = SensorsConfig()
SIZE = 64
PATCHES = PatchesConfig(size=SIZE, eval_stride=48, samples_per_epoch=24, batch_size=4, augment=False)


def _dm(cubes_dir, fold, sensor_set="optical_sar_dem", seed=0, **patches):
    return GlacierDataModule(cubes_dir, fold, SENSORS.resolve(sensor_set),
                             updated(PATCHES, **patches), seed=seed)


def _window(a: np.ndarray, y: int, x: int, size: int = SIZE) -> np.ndarray:
    return a[..., y:y + size, x:x + size]


@functools.lru_cache(maxsize=64)
def _cube(path):
    return read_cube(path)


@pytest.fixture(scope="module")
def sarless_cubes(raw_region, tmp_path_factory):
    """The same region without any sar.tif (SAR is optional in the raw format), ingested."""
    raw = tmp_path_factory.mktemp("nosar") / "raw"
    shutil.copytree(raw_region, raw, ignore=without_truth("sar.tif"))
    out = raw.parent / "cubes"
    ingest_region(raw, out, DATA, SENSORS, progress=False)
    return out


# ------------------------------------------------------------------------------ training patches
def test_training_patches_are_centred_on_training_glacier_pixels(folds, cubes_dir, cube_index):
    inv = cube_index[cube_index.role == "inventory"]
    where = {}
    for _, row in inv.iterrows():
        a = read_cube(cubes_dir / row.path).attrs
        where[(np.float32(a["lon"]), np.float32(a["lat"]))] = row.glacier_id
    for fold in folds:
        dm = _dm(cubes_dir, fold)
        dm.setup("fit")
        seen = set()
        for i in range(len(dm.train_set)):
            s = dm.train_set[i]
            assert s["glacier"][0, SIZE // 2, SIZE // 2] == 1, (fold.index, i)
            assert s["target"][0, SIZE // 2, SIZE // 2] == 1
            seen.add(where[tuple(np.float32(v) for v in s["location"].tolist())])
        assert seen == set(fold.train), fold.index  # only (and, over 24 draws, every) training glacier


@pytest.mark.parametrize("sensor_set", sorted(SENSORS.sets))
def test_shapes_match_the_sensor_set(folds, cubes_dir, sensor_set):
    channels = SENSORS.channels(sensor_set)
    c = sum(channels.values())
    dm = _dm(cubes_dir, folds[0], sensor_set)
    dm.setup()
    for ds in (dm.train_set, dm.val_set, dm.test_set):
        s = ds[0]
        assert s["image"].shape == (c, SIZE, SIZE) and s["image"].dtype == torch.float32
        for key in ("target", "glacier", "valid"):
            assert s[key].shape == (1, SIZE, SIZE)
        assert s["valid"].dtype == torch.bool
        assert s["group_present"].shape == (len(channels),) and s["group_present"].all()
        assert s["location"].shape == (2,)
        assert torch.isfinite(s["image"]).all()
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (PATCHES.batch_size, c, SIZE, SIZE)
    assert batch["group_present"].shape == (PATCHES.batch_size, len(channels))
    assert next(iter(dm.test_dataloader()))["image"].shape[1:] == (c, SIZE, SIZE)


@pytest.mark.parametrize("sensor_set", sorted(SENSORS.sets))
def test_patch_image_is_the_normalised_cube_window(folds, cubes_dir, sensor_set):
    fold = folds[0]
    bands = [b for bs in SENSORS.resolve(sensor_set).values() for b in bs]
    dm = _dm(cubes_dir, fold, sensor_set)
    dm.setup("test")
    mean = np.array([fold.stats[b]["mean"] for b in bands])[:, None, None]
    std = np.array([fold.stats[b]["std"] for b in bands])[:, None, None]
    for i in range(0, len(dm.test_set), 3):
        path, y, x = dm.test_set.items[i]
        expected = (_window(_cube(path).select(bands), y, x) - mean) / std
        np.testing.assert_allclose(dm.test_set[i]["image"].numpy(), np.nan_to_num(expected, nan=0.0),
                                   rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------- masks and grid
def test_valid_target_glacier_follow_the_cube_masks(folds, cubes_dir):
    n_invalid = 0
    for fold in folds:
        dm = _dm(cubes_dir, fold)
        dm.setup("test")
        for i, (path, y, x) in enumerate(dm.test_set.items):
            cube, s = _cube(path), dm.test_set[i]
            np.testing.assert_array_equal(s["valid"][0].numpy(), _window(cube.mask_invalid, y, x) == 0)
            np.testing.assert_array_equal(s["target"][0].numpy(), _window(cube.mask_all, y, x))
            np.testing.assert_array_equal(s["glacier"][0].numpy(), _window(cube.mask_glacier, y, x))
            n_invalid += int((_window(cube.mask_invalid, y, x) == 1).sum())
    assert n_invalid > 0  # precondition: clouds / no data were in the patches


def test_grid_patches_cover_every_cube_pixel(folds, cubes_dir, cube_index):
    inv = cube_index[cube_index.role == "inventory"].set_index("glacier_id")
    for fold in folds:
        dm = _dm(cubes_dir, fold)
        dm.setup()
        for ds, ids in ((dm.test_set, fold.test), (dm.val_set, fold.val)):
            paths = {p for p, _, _ in ds.items}
            assert paths == {cubes_dir / inv.loc[g, "path"] for g in ids}
            for path in paths:
                h, w = _cube(path).mask_all.shape
                assert min(h, w) >= SIZE  # precondition: no padding here (see the next test)
                covered = np.zeros((h, w), int)
                for p, y, x in ds.items:
                    if p == path:
                        assert 0 <= y <= h - SIZE and 0 <= x <= w - SIZE
                        covered[y:y + SIZE, x:x + SIZE] += 1
                assert covered.min() >= 1, path


def test_cube_smaller_than_a_patch_is_padded_as_invalid(folds, cubes_dir, cube_index):
    size = 128
    heights = cube_index[cube_index.role == "inventory"].set_index("glacier_id")["height"]
    fold = next(f for f in folds if (heights[f.test] < size).any())
    dm = _dm(cubes_dir, fold, size=size, eval_stride=size)
    dm.setup("test")
    padded = 0
    for i, (path, y, x) in enumerate(dm.test_set.items):
        cube, s = _cube(path), dm.test_set[i]
        h, w = cube.mask_all.shape
        hh, ww = min(h - y, size), min(w - x, size)
        assert not s["valid"][0, hh:].any() and not s["valid"][0, :, ww:].any()
        assert not s["target"][0, hh:].any() and (s["image"][:, hh:] == 0).all()
        np.testing.assert_array_equal(s["valid"][0, :hh, :ww].numpy(), _window(cube.mask_invalid, y, x, size) == 0)
        padded += int(hh < size or ww < size)
    assert padded >= 1


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("stride", [8, 48, 64, 96, 200])
def test_grid_offsets_cover_any_length(size, stride):
    for length in range(1, 400):
        starts = window_starts(length, size, stride)
        covered = np.zeros(length, bool)
        for s in starts:
            assert 0 <= s and (s + size <= length or (s == 0 and length < size))
            covered[s:s + size] = True
        assert covered.all(), (length, size, stride, starts)
        assert starts == sorted(set(starts))


# --------------------------------------------------------------------------- absent sensor group
def test_absent_sar_gives_group_absent_and_zeros(folds, cubes_dir, sarless_cubes):
    index = read_index(sarless_cubes)
    assert not index.has_sar.any()
    assert "VV" not in read_cube(sarless_cubes / index.path.iloc[0]).bands
    fold = folds[0]  # statistics from the SAR region (a model trained with SAR, applied without)
    n_sar = len(SENSORS.groups["sar"])
    n_opt = len(SENSORS.groups["optical"])
    without = _dm(sarless_cubes, fold, "optical_sar")
    without.setup()
    for ds in (without.train_set, without.test_set):
        for i in range(len(ds)):
            s = ds[i]
            assert s["group_present"].tolist() == [True, False]
            assert (s["image"][n_opt:n_opt + n_sar] == 0).all()
            assert s["image"][:n_opt].abs().sum() > 0
    with_sar = _dm(cubes_dir, fold, "optical_sar")
    with_sar.setup("test")
    present = [with_sar.test_set[i]["group_present"].tolist() for i in range(len(with_sar.test_set))]
    assert all(p == [True, True] for p in present)
    assert with_sar.test_set[0]["image"][n_opt:].abs().sum() > 0


def test_band_without_statistics_is_a_config_error(folds, cubes_dir):
    fold = folds[0]
    stats = {b: s for b, s in fold.stats.items() if b != "VV"}
    dm = _dm(cubes_dir, dataclasses.replace(fold, stats=stats), "optical_sar")
    with pytest.raises(ConfigError, match=r"no normalisation statistics for band\(s\) \['VV'\]"):
        dm.setup("test")


def test_fold_without_training_glaciers_is_a_config_error(folds, cubes_dir):
    dm = _dm(cubes_dir, dataclasses.replace(folds[0], train=[]))
    with pytest.raises(ConfigError, match="no training cubes"):
        dm.setup("fit")


# ----------------------------------------------------------------------------------- epochs
def _patches(ds, epoch: int = 0) -> list[dict]:
    n = len(ds)
    return [ds[epoch * n + i] for i in range(n)]


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_epochs_draw_new_but_reproducible_patches(folds, cubes_dir):
    dm = _dm(cubes_dir, folds[0], augment=True, samples_per_epoch=12)
    dm.setup("fit")
    ds = dm.train_set
    e0 = _patches(ds)
    e1 = _patches(ds, epoch=1)
    assert all(_same(a, b) for a, b in zip(e0, _patches(ds)))  # same epoch, same patches
    assert sum(not _same(a, b) for a, b in zip(e0, e1)) >= len(e0) // 2  # new epoch, new patches
    # Lightning calls the sampler's set_epoch; the epoch travels in the indices, so it reaches
    # persistent worker processes as well as the main process
    for workers in (0, 2):
        loader = dm._loader(ds, EpochSampler(ds)) if workers == 0 else DataLoader(
            ds, batch_size=4, sampler=EpochSampler(ds), num_workers=2, persistent_workers=True)
        for epoch, expected in ((0, e0), (1, e1)):
            loader.sampler.set_epoch(epoch)
            images = torch.cat([b["image"] for b in loader])
            assert torch.equal(images, torch.stack([s["image"] for s in expected])), (workers, epoch)
    # a fresh data module with the same seed draws the same patches; another seed others
    again = _dm(cubes_dir, folds[0], augment=True, samples_per_epoch=12)
    again.setup("fit")
    assert all(_same(a, b) for a, b in zip(e0, _patches(again.train_set)))
    other = _dm(cubes_dir, folds[0], seed=1, augment=True, samples_per_epoch=12)
    other.setup("fit")
    assert not all(_same(a, b) for a, b in zip(e0, _patches(other.train_set)))


def test_augmentation_transforms_image_and_masks_alike(folds, cubes_dir):
    plain = _dm(cubes_dir, folds[0], samples_per_epoch=12)
    aug = _dm(cubes_dir, folds[0], augment=True, samples_per_epoch=12)
    plain.setup("fit")
    aug.setup("fit")
    used = set()
    for i in range(len(plain.train_set)):
        p, a = plain.train_set[i], aug.train_set[i]
        assert torch.equal(p["location"], a["location"]) and torch.equal(p["group_present"], a["group_present"])
        matches = [(k, flip) for k in range(4) for flip in (False, True)
                   if all(torch.equal(_dihedral(p[key], k, flip), a[key])
                          for key in ("image", "target", "glacier", "valid"))]
        assert matches, i  # one flip/rotation, applied alike to the image and every mask
        used.add(matches[0])
    assert len(used) >= 3, used  # augmentation does vary


def _dihedral(t: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    t = torch.rot90(t, k, dims=(-2, -1))
    return torch.flip(t, dims=(-1,)) if flip else t


def test_compact_batches_carry_the_same_patches_in_fewer_bytes(folds, cubes_dir):
    """compact_batches (the GPU default): float16 image and uint8 masks, float32 again on the device."""
    from glaciermap.data.datamodule import to_model_dtypes

    full = _dm(cubes_dir, folds[0], samples_per_epoch=8, compact_batches="off")
    small = _dm(cubes_dir, folds[0], samples_per_epoch=8, compact_batches="on")
    full.setup("fit")
    small.setup("fit")
    a, b = next(iter(full.train_dataloader())), next(iter(small.train_dataloader()))
    assert b["image"].dtype == torch.float16 and b["target"].dtype == torch.uint8
    assert b["image"].nbytes * 2 == a["image"].nbytes
    restored = to_model_dtypes(b)
    assert restored["image"].dtype == restored["target"].dtype == torch.float32
    torch.testing.assert_close(restored["image"], a["image"], atol=2e-3, rtol=1e-3)
    assert torch.equal(restored["target"], a["target"]) and torch.equal(restored["valid"], a["valid"])
    # without CUDA, "auto" keeps full precision: CPU training is unchanged
    assert not _dm(cubes_dir, folds[0], compact_batches="auto").compact or torch.cuda.is_available()


# ------------------------------------------------------------------ debris- and margin-centred patches
def test_margin_pixels_are_the_band_of_the_outline():
    from glaciermap.data.datamodule import margin_pixels

    glacier = np.zeros((60, 60), np.uint8)
    glacier[20:40, 20:40] = 1
    band = np.zeros_like(glacier, bool)
    band[tuple(margin_pixels(glacier, 3).T)] = True
    # inside: the 20 x 20 square less its 14 x 14 core; outside: 3 pixels along each side, plus the
    # 4 corner pixels per corner within a Euclidean 3 ((1,1), (1,2), (2,1), (2,2))
    assert band[glacier == 1].sum() == 400 - 196
    assert band[glacier == 0].sum() == 4 * 20 * 3 + 4 * 4
    assert not band[23:37, 23:37].any() and band[17, 25] and not band[16, 25]
    assert len(margin_pixels(np.zeros((5, 5), np.uint8), 3)) == 0


def test_centre_pools_take_debris_of_this_glacier_or_fall_back():
    from glaciermap.data.datamodule import CentrePools, margin_pixels
    from glaciermap.data.windows import PreparedCube

    glacier = np.zeros((30, 30), np.uint8)
    glacier[5:25, 5:25] = 1
    debris = np.zeros_like(glacier)
    debris[20:28, 10:12] = 1  # partly off the glacier: only the pixels on it count
    cube = PreparedCube(image=np.zeros((1, 30, 30), np.float32), target=glacier, glacier=glacier,
                        valid=np.ones((30, 30), bool), location=np.zeros(2, np.float32),
                        glacier_pixels=np.argwhere(glacier == 1), debris=debris)
    pools = CentrePools(margin_px=2)
    assert {tuple(p) for p in pools(Path("a"), cube, "debris")} == {(y, x) for y in range(20, 25) for x in (10, 11)}
    assert len(pools(Path("a"), cube, "margin")) == len(margin_pixels(glacier, 2))
    assert pools(Path("a"), cube, "glacier") is cube.glacier_pixels
    no_truth = dataclasses.replace(cube, debris=None)
    clean = dataclasses.replace(cube, debris=np.zeros_like(glacier))
    for c in (no_truth, clean):  # no debris to aim at: any glacier pixel
        assert len(CentrePools(2)(Path("b"), c, "debris")) == glacier.sum()


def test_centre_pools_keep_only_the_most_recently_drawn(monkeypatch):
    """Pools are bounded like the cube cache: a region of thousands of glaciers does not grow them forever."""
    from glaciermap.data import datamodule
    from glaciermap.data.windows import PreparedCube

    glacier = np.zeros((12, 12), np.uint8)
    glacier[3:9, 3:9] = 1
    cube = PreparedCube(image=np.zeros((1, 12, 12), np.float32), target=glacier, glacier=glacier,
                        valid=np.ones((12, 12), bool), location=np.zeros(2, np.float32),
                        glacier_pixels=np.argwhere(glacier == 1))
    computed = []
    monkeypatch.setattr(datamodule, "margin_pixels",
                        lambda g, px: computed.append(px) or np.argwhere(g == 1))
    pools = datamodule.CentrePools(margin_px=2, max_items=2)
    for name in ("a", "b", "a", "c", "a", "b"):  # "b" is the least recent when "c" arrives: dropped
        pools(Path(name), cube, "margin")
    assert len(computed) == 4  # a, b, c, then b again; "a" stayed
    assert len(pools._pools) == 2


def test_centre_kinds_follow_the_configured_shares(folds, cubes_dir):
    dm = _dm(cubes_dir, folds[0], debris_centres=0.3, margin_centres=0.4, background_centres=0.2)
    dm.setup("fit")
    gen = torch.Generator().manual_seed(0)
    kinds = [dm.train_set.centre_kind(gen) for _ in range(4000)]
    for kind, share in (("debris", 0.3), ("margin", 0.4), ("background", 0.2), ("glacier", 0.1)):
        assert abs(kinds.count(kind) / 4000 - share) < 0.03, kind


def test_margin_centred_patches_straddle_the_outline(folds, cubes_dir):
    from scipy import ndimage

    width = 6
    dm = _dm(cubes_dir, folds[0], margin_centres=1.0, margin_px=width)
    dm.setup("fit")
    on_glacier = 0
    for i in range(len(dm.train_set)):
        g = dm.train_set[i]["glacier"][0].numpy().astype(bool)
        c = SIZE // 2
        inside, outside = ndimage.distance_transform_edt(g), ndimage.distance_transform_edt(~g)
        assert (inside[c, c] if g[c, c] else outside[c, c]) <= width, i
        on_glacier += bool(g[c, c])
    assert 0 < on_glacier < len(dm.train_set)  # both sides of the outline are drawn


def test_background_centred_patches_sit_on_valid_ground_off_every_outline(folds, cubes_dir):
    """Every centre of a background patch is a valid pixel outside all glaciers, not only its own."""
    dm = _dm(cubes_dir, folds[0], background_centres=1.0)
    dm.setup("fit")
    c = SIZE // 2
    for i in range(len(dm.train_set)):
        s = dm.train_set[i]
        assert s["target"][0, c, c] == 0 and s["valid"][0, c, c], i


def test_background_pool_falls_back_to_the_glacier_where_the_cube_has_no_ground():
    from glaciermap.data import datamodule
    from glaciermap.data.windows import PreparedCube

    glacier = np.ones((8, 8), np.uint8)
    valid = np.ones((8, 8), bool)
    cube = PreparedCube(image=np.zeros((1, 8, 8), np.float32), target=glacier, glacier=glacier, valid=valid,
                        location=np.zeros(2, np.float32), glacier_pixels=np.argwhere(glacier == 1))
    pool = datamodule.CentrePools(margin_px=2)(Path("all-ice"), cube, "background")
    assert len(pool) == 64
    target = glacier.copy()
    target[:, :2] = 0
    valid[0, :] = False  # ground that is no data is never a centre
    cube = PreparedCube(image=np.zeros((1, 8, 8), np.float32), target=target, glacier=glacier, valid=valid,
                        location=np.zeros(2, np.float32), glacier_pixels=np.argwhere(glacier == 1))
    pool = datamodule.CentrePools(margin_px=2)(Path("some-ground"), cube, "background")
    assert sorted(map(tuple, pool)) == [(r, col) for r in range(1, 8) for col in range(2)]


def test_default_centres_are_the_glacier_pixels_as_before(folds, cubes_dir):
    """Shares of 0 draw nothing extra: the default patches are exactly those of an explicit 0."""
    a, b = _dm(cubes_dir, folds[0]), _dm(cubes_dir, folds[0], debris_centres=0.0, margin_centres=0.0, margin_px=3)
    a.setup("fit"), b.setup("fit")
    for i in range(6):
        assert torch.equal(a.train_set[i]["image"], b.train_set[i]["image"])
    c = _dm(cubes_dir, folds[0], margin_centres=1.0)
    c.setup("fit")
    assert any(not torch.equal(a.train_set[i]["image"], c.train_set[i]["image"]) for i in range(6))


def test_centre_shares_above_one_are_a_config_error():
    with pytest.raises(ValueError, match="debris_centres \\+ margin_centres \\+ background_centres"):
        PatchesConfig(debris_centres=0.6, margin_centres=0.5)
    with pytest.raises(ValueError, match="0.4 \\+ 0.3 \\+ 0.4"):
        PatchesConfig(debris_centres=0.4, margin_centres=0.3, background_centres=0.4)


# ------------------------------------------------------------------ photometric augmentation
def test_photometric_relights_optical_and_offsets_backscatter_only(folds, cubes_dir):
    """Same patches with and without `Photometric`: in physical units every optical band of a patch
    is scaled by one gain within exp(+-illumination), VV and VH are shifted by one dB offset within
    +-backscatter_db, and coherence, DEM and no-data pixels are untouched."""
    plain = _dm(cubes_dir, folds[0])
    lit = _dm(cubes_dir, folds[0], illumination=0.3, backscatter_db=3.0)
    plain.setup("fit"), lit.setup("fit")
    groups = SENSORS.resolve("optical_sar_dem")
    bands = [b for bs in groups.values() for b in bs]
    stats = folds[0].stats
    mean = np.array([stats[b]["mean"] for b in bands])[:, None, None]
    std = np.array([stats[b]["std"] for b in bands])[:, None, None]
    gains, offsets = [], []
    for i in range(8):
        a, b = plain.train_set[i], lit.train_set[i]
        for key in ("target", "glacier", "valid"):
            assert torch.equal(a[key], b[key])  # the same window
        za, zb = a["image"].double().numpy(), b["image"].double().numpy()
        nodata = za == 0
        assert (zb[nodata] == 0).all()  # no data stays at the mean
        xa, xb = za * std + mean, zb * std + mean
        for j, band in enumerate(bands):
            have = ~nodata[j]
            if band in groups["optical"]:
                have &= np.abs(xa[j]) > 1e-3  # a reflectance of 0 stays 0: no ratio to check
                ratio = xb[j][have] / xa[j][have]
                np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)
                gains.append(ratio[0])
            elif band in ("VV", "VH"):
                diff = xb[j][have] - xa[j][have]
                np.testing.assert_allclose(diff, diff[0], atol=1e-3)
                offsets.append(diff[0])
            else:
                np.testing.assert_allclose(xb[j], xa[j], atol=1e-5)
    gains, offsets = np.array(gains), np.array(offsets)
    assert gains.min() >= np.exp(-0.3) - 1e-4 and gains.max() <= np.exp(0.3) + 1e-4
    assert np.abs(offsets).max() <= 3.0 + 1e-3
    assert gains.std() > 0.02 and offsets.std() > 0.3  # drawn per patch, not once


def test_group_dropout_zeroes_one_whole_sensor_group_of_a_share_of_the_patches(folds, cubes_dir):
    """Same patches with and without group dropout: a dropped patch marks exactly one of its groups
    absent, so what the model sees (its input times the model's own channel mask) has that group
    (optical 6, sar 3 or dem 3 bands) all 0 and the rest unchanged; about the configured share of
    patches is dropped, each group in turn; image and masks are untouched."""
    from glaciermap.config.models import ModelConfig
    from glaciermap.models.factory import build_model

    plain = _dm(cubes_dir, folds[0])
    drop = _dm(cubes_dir, folds[0], group_dropout=0.5)
    plain.setup("fit"), drop.setup("fit")
    groups = SENSORS.resolve("optical_sar_dem")
    model = build_model(ModelConfig(name="unet", encoder="resnet18"), {g: len(b) for g, b in groups.items()})

    def seen(sample):
        return sample["image"] * model.channel_mask(sample["group_present"][None])[0].to(sample["image"].dtype)

    edges = np.cumsum([0, *(len(b) for b in groups.values())])
    dropped = []
    n = 60
    for i in range(n):
        a, b = plain.train_set[i], drop.train_set[i]
        for key in ("image", "target", "glacier", "valid"):
            assert torch.equal(a[key], b[key])
        xa, xb = seen(a), seen(b)
        changed = [g for g, lo, hi in zip(groups, edges[:-1], edges[1:]) if not torch.equal(xa[lo:hi], xb[lo:hi])]
        assert len(changed) <= 1
        if changed:
            g = list(groups).index(changed[0])
            assert (xb[edges[g]:edges[g + 1]] == 0).all()
            assert a["group_present"][g] and not b["group_present"][g]  # absent, as a missing sensor is
            dropped.append(changed[0])
    assert 0.3 * n <= len(dropped) <= 0.7 * n  # share 0.5 (a group already all 0 would not count)
    assert set(dropped) == set(groups)


def test_group_dropout_is_off_by_default_and_needs_two_groups(folds, cubes_dir):
    assert PatchesConfig().group_dropout == 0
    with pytest.raises(ValueError):
        PatchesConfig(group_dropout=1.0)  # every patch would lose a group: no patch shows them all
    plain, one = _dm(cubes_dir, folds[0], "optical"), _dm(cubes_dir, folds[0], "optical", group_dropout=0.5)
    plain.setup("fit"), one.setup("fit")
    for i in range(5):  # a single group is never dropped: the patches are the same
        for key in ("image", "group_present"):
            assert torch.equal(plain.train_set[i][key], one.train_set[i][key])


def test_photometric_is_off_by_default():
    assert PatchesConfig().illumination == 0 and PatchesConfig().backscatter_db == 0
    with pytest.raises(ValueError):
        PatchesConfig(illumination=-0.1)


def test_labels_near_other_glaciers_outlines_leave_the_loss_but_not_the_own_glaciers():
    """patches.neighbour_margin_px: a neighbour's outline may predate the image; its margin (inside
    and out) is not a label to train on, the cube's own glacier is (its outline is of the image's date)."""
    from glaciermap.data.datamodule import ignore_neighbour_margins
    from glaciermap.data.windows import PreparedCube

    own, target = np.zeros((12, 20), np.uint8), np.zeros((12, 20), np.uint8)
    own[2:10, 2:8] = 1  # this glacier: columns 2-7
    target[2:10, 2:8] = 1
    target[2:10, 9:16] = 1  # a neighbour: columns 9-15, one pixel of ground (column 8) between them
    valid = np.ones((12, 20), bool)
    valid[0, :] = False  # no data stays no data
    cube = PreparedCube(image=np.zeros((1, 12, 20), np.float32), target=target, glacier=own, valid=valid,
                        location=np.zeros(2, np.float32), glacier_pixels=np.argwhere(own == 1))
    out = ignore_neighbour_margins(cube, 2)
    row = out.valid[5]  # across both glaciers, mid-height
    assert row[2:8].all()  # the own glacier keeps every label, even beside the neighbour
    assert not row[8]  # the ground between them: within 2 px of the neighbour
    assert not row[9:11].any() and row[11:14].all() and not row[14:16].any()  # the neighbour's 2-px rim
    assert not row[16:18].any() and row[18:].all()  # ground beyond it: 2 px left out
    assert not out.valid[0].any() and out.valid[11, 0]  # no data kept out; far ground kept
    assert (out.target == target).all() and out.valid is not valid  # labels unchanged, a new mask
    assert ignore_neighbour_margins(cube, 0) is cube
    alone = dataclasses.replace(cube, target=own.copy())
    assert ignore_neighbour_margins(alone, 2) is alone  # no neighbour: nothing to leave out


def test_neighbour_margins_of_other_date_leave_out_only_those_outlines():
    """patches.neighbour_margin_of: other_date: only the outlines marked in mask_other_date (another
    inventory epoch than the image) lose their margins; a neighbour of the image's date keeps them."""
    from glaciermap.data.datamodule import ignore_neighbour_margins
    from glaciermap.data.windows import PreparedCube

    own, target, other = (np.zeros((12, 24), np.uint8) for _ in range(3))
    own[2:10, 2:8] = target[2:10, 2:8] = 1  # this glacier: columns 2-7
    target[2:10, 10:14] = 1  # a neighbour of the image's date: columns 10-13
    target[2:10, 17:22] = other[2:10, 17:22] = 1  # one of another date: columns 17-21
    cube = PreparedCube(image=np.zeros((1, 12, 24), np.float32), target=target, glacier=own,
                        valid=np.ones((12, 24), bool), location=np.zeros(2, np.float32),
                        glacier_pixels=np.argwhere(own == 1), other_date=other)
    row = ignore_neighbour_margins(cube, 1, "other_date").valid[5]
    assert row[:16].all()  # own glacier, the same-date neighbour and the ground around it: all kept
    assert not row[16:18].any() and row[18:21].all() and not row[21:23].any() and row[23]  # 1-px rim
    assert not ignore_neighbour_margins(cube, 1, "all").valid[5][9:11].any()  # "all" leaves both out


def test_other_date_margins_are_refused_unmarked_and_undated_cubes_keep_their_labels(folds, cubes_dir, cube_index):
    """Without data.mark_other_date_outlines the setting is refused when params are read. Cubes
    without the layer (a dataset adapter's: no outline dates) keep every label, with one warning
    naming the first such cube."""
    from glaciermap.config import parse_params
    from glaciermap.data.datamodule import CubeCache

    with pytest.raises(ConfigError, match="mark_other_date_outlines"):
        parse_params({"patches": {"neighbour_margin_px": 2, "neighbour_margin_of": "other_date"}})
    parse_params({"patches": {"neighbour_margin_px": 2, "neighbour_margin_of": "other_date"},
                  "data": {"mark_other_date_outlines": True}})
    paths = [cubes_dir / p for p in cube_index.path.iloc[:2]]
    cache = CubeCache(SENSORS.resolve("optical"), folds[0].stats, neighbour_margin_px=2,
                      neighbour_margin_of="other_date")
    with pytest.warns(UserWarning, match="no mask_other_date layer") as caught:
        cubes = [cache[p] for p in paths]
    assert len(caught) == 1 and str(paths[0]) in str(caught[0].message)
    plain = CubeCache(SENSORS.resolve("optical"), folds[0].stats)
    assert all((c.valid == plain[p].valid).all() for c, p in zip(cubes, paths))
