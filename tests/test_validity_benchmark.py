"""The validity benchmark's pure pieces (benchmarks/validity.py): coverage, pooled targets, its inputs.

The benchmark itself runs the whole pipeline per region (minutes each) and is run on demand, not here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from glaciermap.errors import ConfigError

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def validity():
    return load_benchmark("validity.py", "validity_benchmark")


@pytest.fixture(scope="module")
def se():
    """benchmarks/surface_errors.py as a module."""
    return load_benchmark("surface_errors.py", "surface_errors")


def g(est, sigma, true):
    return {"glacier_id": "G", "est": est, "sigma": sigma, "true": true}


#: |est - true| vs sigma: 0.2 <= 0.5 (1 and 2 sigma); 0.5 in (0.3, 0.6] (2 sigma only); 0.5 > 0.2
#: (neither); 0 (both); exactly 1 sigma (both: the bound counts); no sigma (left out)
REGION_A = [g(-1.0, 0.5, -1.2), g(-2.0, 0.3, -2.5), g(-1.5, 0.1, -2.0), g(-0.5, 0.25, -0.5),
            g(-1.0, 0.25, -1.25), g(-1.0, None, -1.0)]
REGION_B = [g(-3.0, 0.2, -3.1), g(-2.0, 0.1, -2.5)]  # 0.1 <= 0.2 (both); 0.5 > 0.2 (neither)


def test_glacier_coverage_counts_each_glacier_against_its_own_sigma(validity):
    cover = validity.glacier_coverage(REGION_A)
    assert cover["n"] == 5
    assert cover["cover_1sigma"] == pytest.approx(3 / 5)
    assert cover["cover_2sigma"] == pytest.approx(4 / 5)
    assert validity.glacier_coverage([g(-1.0, None, -1.2), g(None, 0.1, -1.0), g(-1.0, 0.0, -1.0)]) == {
        "n": 0, "cover_1sigma": None, "cover_2sigma": None}  # no sigma, no estimate, a zero sigma


def region(name, true, est, sigma, corr=None, regionwide=None, glaciers=()):
    return {"name": name, "seed": 1, "true_rate_pct_per_yr": true, "est_rate_pct_per_yr": est,
            "sigma_pct_per_yr": sigma, "sigma_correlated_pct_per_yr": corr,
            "regionwide_rate_pct_per_yr": regionwide, "kept_glaciers": list(glaciers)}


def test_pooled_statistics_against_the_issue_targets(validity):
    rows = [region("a", -1.8, -1.7, 0.1, corr=0.3, regionwide=-1.75, glaciers=REGION_A),   # |e| 0.1 <= 0.2
            region("b", -3.0, -2.6, 0.15, corr=0.4, regionwide=-3.2, glaciers=REGION_B),   # |e| 0.4 > 0.3
            region("c", -0.5, -0.45, 0.6),                                                 # |e| 0.05, sigma 0.6
            {"name": "real-terrain", "seed": 6, "skipped": "input missing: hef_srtm.tif"},
            {"name": "cloudy", "seed": 2, "error": "train fold0 exited 2: error: ..."}]
    p = validity.pooled_statistics(rows)
    assert p["n_regions"] == 3 and p["n_glaciers_kept"] == 8 and p["n_glaciers_with_sigma"] == 7
    assert p["glacier_cover_1sigma"] == pytest.approx(4 / 7)
    assert p["glacier_cover_2sigma"] == pytest.approx(5 / 7)
    assert p["median_abs_error_pct_per_yr"] == pytest.approx(0.1)
    assert p["max_abs_error_pct_per_yr"] == pytest.approx(0.4)
    assert p["fraction_within_2sigma"] == pytest.approx(2 / 3)
    assert p["fraction_within_2sigma_correlated"] == 1.0  # a: 0.1 <= 0.6, b: 0.4 <= 0.8; c has none
    assert p["max_sigma_pct_per_yr"] == pytest.approx(0.6)
    assert p["max_regionwide_abs_error_pct_per_yr"] == pytest.approx(0.2)
    assert p["median_regionwide_abs_error_pct_per_yr"] == pytest.approx(0.125)
    verdict = {t["key"]: t["pass"] for t in p["targets"]}
    assert verdict == {"glacier_cover_1sigma": True, "glacier_cover_2sigma": False, "fraction_within_2sigma": False,
                       "median_abs_error_pct_per_yr": True, "max_abs_error_pct_per_yr": True,
                       "max_sigma_pct_per_yr": False, "max_regionwide_abs_error_pct_per_yr": True}
    assert p["all_pass"] is False


def test_pooled_statistics_without_sigmas_leaves_those_targets_unknown(validity):
    """Today's area-change summary has no sigma and no region-wide rate: those targets are None."""
    p = validity.pooled_statistics([region("a", -1.8, -1.7, None, glaciers=[g(-1.0, None, -1.1)])])
    verdict = {t["key"]: t["pass"] for t in p["targets"]}
    assert verdict["median_abs_error_pct_per_yr"] is True and verdict["max_abs_error_pct_per_yr"] is True
    assert verdict["glacier_cover_1sigma"] is None and verdict["fraction_within_2sigma"] is None
    assert verdict["max_regionwide_abs_error_pct_per_yr"] is None
    assert p["all_pass"] is None


def _parts_row(name, est, true, independent, correlated, missed, glaciers=(), **extra):
    return {"name": name, "est_rate_pct_per_yr": est, "true_rate_pct_per_yr": true,
            "sigma_band_independent_pct_per_yr": independent, "sigma_band_correlated_pct_per_yr": correlated,
            "sigma_missed_pct_per_yr": missed, "kept_glaciers": list(glaciers), **extra}


def test_uncertainty_fit_recovers_known_numbers(validity):
    # 300 regions drawn from the model itself: glacier errors N(0, (0.6 s_i)**2), regional errors
    # N(0, 0.12**2 + 0.6**2 (I**2 + M**2)) (rho = 0)
    rng = np.random.default_rng(3)
    rows = []
    for i in range(300):
        s = rng.uniform(0.2, 0.8, 10)
        glaciers = [g(-2.0 + e, si, -2.0) for e, si in zip(rng.normal(0, 0.6 * s), s)]
        ind, mis = rng.uniform(0.05, 0.2), rng.uniform(0.0, 0.1)
        sigma = np.sqrt(0.12**2 + 0.36 * (ind**2 + mis**2))
        rows.append(_parts_row(f"r{i}", -1.8 + rng.normal(0, sigma), -1.8, ind, 3 * ind, mis, glaciers))
    fit = validity.fit_uncertainty(rows)
    assert fit["n_regions"] == 300 and fit["n_glaciers"] == 3000
    assert fit["sigma_scale"] == pytest.approx(0.6, abs=0.02)
    assert fit["band_correlation"] <= 0.1 and fit["discrepancy_pct_per_yr"] == pytest.approx(0.12, abs=0.03)
    assert 0.9 <= fit["leave_one_out_within_2sigma"] <= 1.0
    assert fit["leave_one_out_glacier_cover_1sigma"] == pytest.approx(0.683, abs=0.03)
    assert fit["held_out"] == [] and fit["held_out_within_2sigma"] is None


def test_uncertainty_fit_by_hand_leave_one_out_and_held_out(validity):
    # glaciers 0.3 and 0.6 band sigmas off: k = sqrt((0.09 + 0.36) / 2) = 0.474 -> 0.47. Parts I = C = 0.1,
    # M = 0, errors 0.2: the likelihood peaks where tau**2 + 0.47**2 * 0.01 = 0.04, tau = 0.1944 (grid
    # 0.195); rho cannot matter (the grid's first, 0)
    glaciers = [g(-1.5, 0.2, -1.56), g(-1.0, 0.4, -0.76)]
    rows = [_parts_row(n, -1.6, -1.8, 0.1, 0.1, 0.0, glaciers) for n in "ab"]
    # a row written with sigma_scale 0.5 holds the scaled sigmas: the same band z
    rows.append(_parts_row("c", -1.6, -1.8, 0.1, 0.1, 0.0, [g(-1.5, 0.1, -1.56), g(-1.0, 0.2, -0.76)],
                           sigma_scale=0.5))
    # held out: glacier z = 0.05 / (0.47 * 0.2) = 0.53 (covered) and 0.3 / 0.094 = 3.2 (not at 2 sigma)
    held = _parts_row("h", -1.0, -1.8, 0.1, 0.1, 0.0, [g(-1.75, 0.2, -1.8), g(-1.5, 0.2, -1.8)], held_out=True)
    fit = validity.fit_uncertainty([*rows, held])
    assert (fit["sigma_scale"], fit["band_correlation"], fit["discrepancy_pct_per_yr"]) == (0.47, 0.0, 0.195)
    assert fit["n_regions"] == 3 and fit["n_glaciers"] == 6  # the held-out region is not fitted on
    sigma = np.sqrt(0.195**2 + 0.47**2 * 0.01)
    loo = {x["name"]: x for x in fit["leave_one_out"]}
    assert loo["a"]["z"] == pytest.approx(0.2 / sigma) and fit["leave_one_out_within_2sigma"] == 1.0
    # scaled glacier z 0.64 and 1.28: half within 1 sigma, all within 2
    assert (loo["a"]["cover_1sigma"], loo["a"]["cover_2sigma"]) == (0.5, 1.0)
    assert (fit["leave_one_out_glacier_cover_1sigma"], fit["leave_one_out_glacier_cover_2sigma"]) == (0.5, 1.0)
    (h,) = fit["held_out"]
    assert h["z"] == pytest.approx(0.8 / sigma) and fit["held_out_within_2sigma"] == 0.0
    assert (h["cover_1sigma"], h["cover_2sigma"]) == (0.5, 0.5) and fit["held_out_glacier_cover_1sigma"] == 0.5
    # too few fitted regions with the parts (one lacks them): no fit
    assert validity.fit_uncertainty(rows[:2] + [{**rows[2], "sigma_missed_pct_per_yr": None}]) is None


def test_kept_glaciers_joins_the_table_with_the_truth(validity, tmp_path):
    table, truth = tmp_path / "area_change.csv", tmp_path / "rates.csv"
    table.write_text("glacier_id,rate_pct_per_yr,rate_sigma_pct_per_yr,kept\n"
                     "0001,-1.5,0.2,True\n0002,-9.0,0.1,False\n0003,-0.8,,True\n")
    truth.write_text("glacier_id,rate_pct_per_yr\n0001,-1.6\n0002,-2.0\n0003,-0.7\n")
    assert validity.kept_glaciers(table, truth) == [
        {"glacier_id": "0001", "est": -1.5, "sigma": 0.2, "true": -1.6},
        {"glacier_id": "0003", "est": -0.8, "sigma": None, "true": -0.7}]
    table.write_text("glacier_id,rate_pct_per_yr,kept\n0001,-1.5,True\n")  # no sigma column (before #16)
    assert validity.kept_glaciers(table, truth) == [{"glacier_id": "0001", "est": -1.5, "sigma": None, "true": -1.6}]


def settings(validity, **kw):
    return validity.Settings(**{"mode": "full", "folds": 3, "max_epochs": 2, "seeds": None, "profile": None,
                                "base_params": ROOT / "params.yaml", **kw})


def test_region_params_apply_the_region_and_the_reductions(validity, tmp_path):
    region = validity.Region("cloudy", 202, "r", {"cloud_cover": 0.15})
    raw = validity.region_params(region, settings(validity), tmp_path)
    assert raw["simulate"]["cloud_cover"] == 0.15 and raw["simulate"]["seed"] == 202
    assert raw["folds"]["k"] == 3 and raw["train"]["folds"] == [0, 1, 2] and raw["train"]["max_epochs"] == 2
    assert raw["tracking"]["tracking_uri"] == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"  # never the project's
    labels = [label for label, _ in validity.stage_commands(validity.parse_params(raw))]
    assert labels[:3] == ["simulate", "ingest", "folds"] and labels[-4:] == ["evaluate", "register", "infer",
                                                                             "area-change"]
    seeds = raw["train"]["seeds"]  # params.yaml's ensemble: every fold once per member
    assert labels[3:-4] == [f"train fold{f}" + (f" seed{s}" if len(seeds) > 1 else "") for f in range(3) for s in seeds]
    with pytest.raises(ConfigError, match="cloud_cover"):
        validity.region_params(validity.Region("bad", 1, "r", {"cloud_cover": 5.0}), settings(validity), tmp_path)


def test_a_profile_variant_reaches_every_region_and_its_settings_row(validity, tmp_path):
    profile = ROOT / "experiments" / "debris_centres.yaml"
    args = validity.parse_args(["--regions", "fast-retreat", "--profile", str(profile),
                                "--out", str(tmp_path / "variant.json")])
    assert args.settings.profile == profile.resolve() and args.out == tmp_path / "variant.json"
    region = next(r for r in validity.REGIONS if r.name == "fast-retreat")
    raw = validity.region_params(region, args.settings, tmp_path)
    assert raw["patches"]["debris_centres"] == 0.25 and raw["patches"]["margin_centres"] == 0.25
    assert raw["simulate"]["regional_rate_pct_per_yr"] == -3.0  # the region's overrides still apply
    row = validity._row_settings(raw, args.settings, region)
    assert (row["debris_centres"], row["margin_centres"]) == (0.25, 0.25)
    assert row["profile"] == "experiments/debris_centres.yaml"


def test_an_absent_real_input_stops_the_run_before_any_stage_and_keeps_the_results(validity, tmp_path, capsys):
    out = tmp_path / "validity.json"
    out.write_text('{"mode": "full", "regions": [{"name": "real-terrain", "est_rate_pct_per_yr": -1.7}]}')
    rc = validity.main(["--regions", "real-terrain", "--shared-data", str(tmp_path / "nowhere"),
                        "--work", str(tmp_path / "work"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith(f"error: {tmp_path / 'nowhere' / 'real-alps' / 'hef_srtm.tif'}: not found")
    assert "--shared-data" in err[0]
    assert not (tmp_path / "work").exists()
    assert json.loads(out.read_text())["regions"][0]["est_rate_pct_per_yr"] == -1.7  # nothing measured is lost


def test_the_real_region_reads_its_files_from_the_shared_data_folder(validity, tmp_path):
    region = next(r for r in validity.REGIONS if r.name == "real-terrain")
    raw = validity.region_params(region, settings(validity, shared_data=tmp_path), tmp_path)
    assert raw["simulate"]["dem_path"] == str(tmp_path / "real-alps" / "hef_srtm.tif")
    assert raw["simulate"]["outlines_path"] == str(tmp_path / "real-alps" / "rgi7g_hef_complex.shp")
    assert validity.missing_input([region], tmp_path) is not None
    assert validity.missing_input([r for r in validity.REGIONS if r.name != "real-terrain"], tmp_path) is None


def test_a_stage_runs_in_its_work_folder_and_reports_wall_and_cpu_time(validity, tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    wall, cpu = validity.run_stage(tmp_path, 0, "config show", ["config", "show"])
    assert wall > 0 and cpu > 0  # the child's own user + system time (os.wait4)
    assert "name: demo-alps" in (tmp_path / "logs" / "00_config_show.log").read_text()


def test_a_failed_stage_names_its_error_line_and_log(validity, tmp_path):
    with pytest.raises(validity.StageFailed, match=r"folds exited 2: error: .*params\.yaml.*\(log: .*02_folds\.log\)"):
        validity.run_stage(tmp_path, 2, "folds", ["folds"])  # no params.yaml in the work folder


def test_rerunning_some_regions_replaces_only_their_rows(validity):
    old = [{"name": "demo", "v": 1}, {"name": "cloudy", "v": 1}]
    merged = validity._merge_rows(old, [{"name": "cloudy", "v": 2}, {"name": "debris-heavy", "v": 2}])
    assert [(r["name"], r["v"]) for r in merged] == [("demo", 1), ("debris-heavy", 2), ("cloudy", 2)]


def test_markdown_rows_keep_the_table_shape(validity):
    from report import validity_lines  # benchmarks/ is on sys.path once validity.py is imported

    rows = [region("a", -1.8, -1.7, 0.1, regionwide=-1.75, glaciers=REGION_A) | {
                "n_glaciers": 20, "n_kept": 6, "glacier_cover_1sigma": 0.6, "glacier_cover_2sigma": 0.8,
                "glacier_r": 0.9, "test_iou_mean": 0.9, "wall_s": 400.0, "regionwide_sigma_pct_per_yr": 0.2,
                "settings": {"folds": 3}},
            {"name": "real-terrain", "seed": 6, "skipped": "input missing: a|b"}]
    doc = {"mode": "full", "regions": rows, "pooled": validity.pooled_statistics(rows), "method": "m", "wall_s": 1,
           "machine": {"cpu_model": "x", "logical_cpus": 2, "platform": "p", "torch": "t", "jobs": 1, "date": "d",
                       "loadavg_1_5_15": [1, 1, 1]}}
    lines = validity_lines(doc)
    table = [x for x in lines if x.startswith("| ")][:3]  # header, region a, real-terrain
    assert len({x.count("|") for x in table}) == 1, table
    assert "-1.70 ± 0.10" in table[1] and "skipped: input missing: a/b" in table[2]


def test_outputs_that_cannot_be_read_fail_the_region_not_the_run(validity, tmp_path, monkeypatch):
    monkeypatch.setattr(validity, "stage_commands", lambda params: [])  # no stage: no area_change.csv
    row = validity.run_region(validity.Region("demo", 42, "r"), settings(validity), tmp_path)
    assert row["error"].startswith("reading the outputs: FileNotFoundError")
    assert "area_change.csv" in row["error"] and "est_rate_pct_per_yr" not in row


# surface classes as the simulator writes them: 0 rock, 4 ice, 5 firn, 6 debris, 8 forefield
def test_pixel_budget_counts_misses_and_false_glacier_by_surface_class(validity):
    surface = np.array([[4, 4, 6, 6, 8],
                        [5, 6, 6, 8, 0],
                        [4, 4, 4, 8, 0]], np.uint8)
    prob = np.array([[0.9, 0.6, 0.2, 0.1, 0.7],
                     [0.9, 0.4, 0.8, 0.5, 0.9],
                     [0.9, 0.3, 0.9, 0.1, 0.1]], np.float32)
    counted = np.ones(surface.shape, bool)
    counted[:, 4] = False  # outside the outline: its false pixels (forefield 0.7, rock 0.9) do not count
    b = validity.pixel_budget(surface, prob, counted)
    # true glacier (4, 5, 6) in columns 0-3: 4 + 3 + 3 = 10; predicted: 0.9 0.6 | 0.9 0.8 0.5 | 0.9 0.9 = 7
    # missed: debris 0.2, 0.1, 0.4 and ice 0.3 = 4 (3 debris); false: forefield at 0.5 = 1; 7 = 10 - 4 + 1
    assert b == {"true": 10, "pred": 7, "missed": 4, "missed_debris": 3, "false": 1, "false_forefield": 1}


def test_change_budget_splits_the_loss_error_into_misses_and_false_glacier(validity):
    inventory = {"true": 100, "pred": 90, "missed": 12, "missed_debris": 10, "false": 2, "false_forefield": 0}
    recent = {"true": 80, "pred": 78, "missed": 4, "missed_debris": 1, "false": 2, "false_forefield": 2}
    b = validity.change_budget(inventory, recent, px_km2=0.01)
    # true loss 20 px, estimated 12 = 20 - (12 - 4) + (2 - 2)
    assert b["true_loss_km2"] == pytest.approx(0.20) and b["est_loss_km2"] == pytest.approx(0.12)
    assert b["loss_recovered"] == pytest.approx(0.6)
    assert b["missed_change_km2"] == pytest.approx(0.08) and b["false_change_km2"] == pytest.approx(0.0)
    assert b["true_loss_km2"] - b["missed_change_km2"] + b["false_change_km2"] == pytest.approx(b["est_loss_km2"])
    assert b["missed_debris_inventory_km2"] == pytest.approx(0.10) and b["false_forefield_recent_km2"] == pytest.approx(0.02)
    assert validity.change_budget(inventory, inventory, 0.01)["loss_recovered"] is None  # no loss: no ratio


def _tif(path, array, transform, nodata=None):
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=array.shape[1], height=array.shape[0], count=1,
                       dtype=array.dtype, crs="EPSG:32632", transform=transform, nodata=nodata) as dst:
        dst.write(array, 1)


def test_region_budget_reads_each_kept_glaciers_cubes_truth_and_predictions(validity, tmp_path, monkeypatch):
    """A 6 x 8 scene; glacier G1's cube is a 4 x 4 window inside it, G2's crosses the scene's east
    edge (its outside pixels have no truth and count as nothing); G3 is not kept."""
    from types import SimpleNamespace

    from rasterio.transform import from_origin

    from glaciermap.data.grid import Grid

    res, left, top = 10.0, 600_000.0, 5_000_000.0
    scene = from_origin(left, top, res, res)
    work = tmp_path / "w"
    (work / "data" / "truth").mkdir(parents=True)
    cubes = {"G1": (1, 1), "G2": (2, 6), "G3": (0, 0)}  # (row, col) of each cube's top-left in the scene
    surfaces = {"2015": np.full((6, 8), 4, np.uint8), "2023": np.full((6, 8), 4, np.uint8)}
    surfaces["2023"][:, :3] = 8  # the ice left columns 0-2 by 2023: forefield
    for epoch, surface in surfaces.items():
        _tif(work / "data" / "truth" / f"surface_{epoch}.tif", surface, scene, 255)
    rows, fake = [], {}
    for gid, (r, c) in cubes.items():
        grid = Grid("EPSG:32632", from_origin(left + c * res, top - r * res, res, res), 4, 4)
        fake[f"{gid}.nc"] = SimpleNamespace(grid=grid, mask_glacier=np.ones((4, 4), np.uint8),
                                            mask_invalid=np.zeros((4, 4), np.uint8))
        for epoch, role in (("2015", "inventory"), ("2023", "recent")):
            (work / "products" / "predictions" / epoch).mkdir(parents=True, exist_ok=True)
            _tif(work / "products" / "predictions" / epoch / f"{gid}.tif", np.full((4, 4), 0.9, np.float32), grid.transform)
            rows.append({"glacier_id": gid, "epoch": epoch, "role": role, "path": f"{gid}.nc"})
    (work / "products" / "cubes").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(work / "products" / "cubes" / "index.csv", index=False)
    monkeypatch.setattr(validity, "read_cube", lambda path: fake[Path(path).name])
    params = SimpleNamespace(data=SimpleNamespace(raw_dir="data", cubes_dir="products/cubes"))

    b = validity.region_budget(work, params, {"G1", "G2"})
    # G1 (rows 1-4, cols 1-4): 16 ice in 2015; in 2023 cols 1-2 are forefield: 8 ice, 8 false.
    # G2 (rows 2-5, cols 6-9): cols 6-7 in the scene, 8 ice at both epochs; cols 8-9 outside: nothing.
    px = 1e-4
    assert b["true_inventory_km2"] == pytest.approx(24 * px) and b["true_recent_km2"] == pytest.approx(16 * px)
    assert b["false_recent_km2"] == pytest.approx(8 * px) and b["false_forefield_recent_km2"] == pytest.approx(8 * px)
    assert b["pred_inventory_km2"] == pytest.approx(24 * px) and b["pred_recent_km2"] == pytest.approx(24 * px)
    assert b["est_loss_km2"] == pytest.approx(0.0) and b["loss_recovered"] == pytest.approx(0.0)
    assert validity.region_budget(tmp_path / "absent", params, {"G1"}) is None


def test_rescoring_reads_a_finished_region_again_and_keeps_its_run_facts(validity, tmp_path, monkeypatch):
    region = validity.Region("demo", 42, "r")
    with pytest.raises(SystemExit, match=r"^error: .*demo: no finished region to rescore \(run the benchmark"):
        validity.rescore_region(region, tmp_path, None)
    (tmp_path / "demo").mkdir()
    shutil.copy(ROOT / "params.yaml", tmp_path / "demo" / "params.yaml")
    seen = []
    monkeypatch.setattr(validity, "region_row", lambda r, work, params: seen.append(work) or {"est_rate_pct_per_yr": -1.0})
    old = {"name": "demo", "seed": 42, "wall_s": 500.0, "settings": {"folds": 3}, "est_rate_pct_per_yr": -2.0}
    row = validity.rescore_region(region, tmp_path, old)
    assert seen == [tmp_path / "demo"]
    assert row == {**old, "est_rate_pct_per_yr": -1.0}  # new figures, the run's wall time and settings kept


def test_mapping_figures_are_the_worst_folds_of_evaluate(validity):
    evaluation = {"folds": {"fold0": {"iou": 0.95, "debris_iou": 0.70}, "fold1": {"iou": 0.88, "debris_iou": float("nan")},
                            "fold2": {"iou": 0.91, "debris_iou": 0.85}},
                  "mean": {"iou_mean": 0.913, "debris_iou_mean": 0.775}}
    got = validity.mapping_figures(evaluation)
    assert got["test_iou_folds"] == {"fold0": 0.95, "fold1": 0.88, "fold2": 0.91}
    assert got["test_iou_min_fold"] == 0.88 and got["debris_iou_min_fold"] == 0.70  # a fold without debris truth skipped
    assert got["debris_iou_mean"] == 0.775
    assert validity.mapping_figures({}) == {"test_iou_folds": {}, "test_iou_min_fold": None,
                                            "debris_iou_mean": None, "debris_iou_min_fold": None}


def test_surface_errors_count_each_class_by_hand(se):
    from glaciermap.data.simulate.surface import DEBRIS, FOREFIELD, FOREST, ICE, ROCK

    cls = np.array([[ICE, ICE, DEBRIS, FOREFIELD],
                    [FOREST, FOREST, ROCK, ROCK]])
    outline = np.array([[1, 1, 1, 1], [0, 0, 0, 0]], np.uint8)  # the forefield pixel lies in the old outline
    pred = np.array([[True, False, False, True], [True, False, False, False]])
    valid = np.ones_like(pred)
    valid[1, 3] = False  # an invalid rock pixel counts nowhere
    assert se.off_ice_errors(pred, cls, outline, valid) == {"rock": [0, 1], "forest": [1, 2]}
    inside = se.pixel_budget(cls, pred.astype(np.float32), (outline == 1) & valid)  # validity.py's, shared
    assert inside["missed"] - inside["missed_debris"] == 1 and inside["missed_debris"] == 1  # clean, debris
    assert inside["false_forefield"] == 1 and inside["false"] - inside["false_forefield"] == 0


def test_edge_halo_and_young_forefield_by_hand(se):
    from glaciermap.data.simulate.surface import FOREFIELD, ICE, ROCK

    # a 1 x 9 strip: outline on columns 2-6, the ice retreated to columns 2-4 by the recent year
    own = np.zeros((1, 9), bool)
    own[0, 2:7] = True
    valid, mask_all = np.ones((1, 9), bool), own.astype(np.uint8)
    cls = np.array([[ROCK, ROCK, ICE, ICE, ICE, FOREFIELD, FOREFIELD, ROCK, ROCK]])
    # inventory: ice mapped one pixel beyond the outline on the right (3-px ring: columns 7-8 and 0-1)
    pred = np.array([[False, False, True, True, True, True, True, True, False]])
    assert se.edge_halo("inventory", pred, cls, own, mask_all, valid) == {"halo": 1, "edge": 2}
    # recent: the map keeps column 5 (young forefield) as ice: 1 false pixel, its edge inside is column 6
    pred = np.array([[False, False, True, True, True, True, False, False, False]])
    assert se.edge_halo("recent", pred, cls, own, mask_all, valid) == {"halo": 1, "edge": 1}
    coh = np.array([[0.7, 0.7, 0.1, 0.1, 0.1, 0.4, 0.6, 0.7, 0.7]], np.float32)
    young = se.young_forefield(pred, cls, own, valid, coh)
    assert young["kept_as_ice"][0].tolist() == [1.0] and young["kept_as_ice"][1].tolist() == pytest.approx([0.4])
    assert young["mapped_off"][0].tolist() == [2.0] and young["mapped_off"][1].tolist() == pytest.approx([0.6])


def test_label_dates_by_hand(se):
    """A neighbour outline older than the image labels the ice lost since (forefield now) as glacier."""
    from glaciermap.data.simulate.surface import FOREFIELD, ICE, ROCK

    # own glacier on columns 1-3; a neighbour outline on 5-8 whose ice now ends at column 7; ice on 10
    # that no outline labels; column 4 rock
    cls = np.array([[ROCK, ICE, ICE, ICE, ROCK, ICE, ICE, ICE, FOREFIELD, ROCK, ICE]])
    own = np.zeros((1, 11), bool)
    own[0, 1:4] = True
    mask_all = own.astype(np.uint8)
    mask_all[0, 5:9] = 1
    valid = np.ones((1, 11), bool)
    assert se.label_dates(cls, own, mask_all, valid) == {
        "neighbour_label_px": 4, "neighbour_label_not_ice_px": 1, "neighbour_label_forefield_px": 1,
        "own_label_not_ice_px": 0, "ice_off_every_label_px": 1}
