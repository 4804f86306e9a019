"""Area-change analysis: rates, masked correction, filters, regional summary, outputs, figures."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from glaciermap.analysis.area_change import (
    AreaChangeConfig,
    area_change_table,
    compare_with_truth,
    correct_masked_area,
    regional_summary,
    write_outputs,
)
from glaciermap.analysis.change_figures import area_scatter_figure, rate_by_size_class_figure
from glaciermap.errors import InputDataError

NO_EXTREME = AreaChangeConfig(drop_extreme_frac=0.0)


def row(gid, a_out=10.0, p_inv=None, p_rec=None, y0=2000, y1=2010, m0=0.0, m1=0.0, recall=0.9,
        sd0=np.nan, sd1=np.nan):
    return {
        "glacier_id": gid, "area_inventory_km2": a_out, "year_inv": y0, "year_recent": y1,
        "pred_area_inv_km2": a_out if p_inv is None else p_inv,
        "pred_area_recent_km2": (0.9 * a_out) if p_rec is None else p_rec,
        "masked_frac_inv": m0, "masked_frac_recent": m1, "recall_test": recall,
        "pred_std_inv_km2": sd0, "pred_std_recent_km2": sd1,
    }


def table(*rows):
    return pd.DataFrame(list(rows))


# --------------------------------------------------------------------------- rates


def test_rate_formula_two_glaciers():
    df = table(
        # outline 12 km2 but predicted 10 -> 8 over 20 yr: -0.1 km2/yr, -1 %/yr of PREDICTED area
        row("G1", a_out=12.0, p_inv=10.0, p_rec=8.0, y0=2000, y1=2020),
        row("G2", a_out=2.0, p_inv=2.0, p_rec=1.5, y0=2010, y1=2015),
    )
    t = area_change_table(df, NO_EXTREME).set_index("glacier_id")
    assert t.loc["G1", "rate_km2_per_yr"] == pytest.approx(-0.1)
    assert t.loc["G1", "rate_pct_per_yr"] == pytest.approx(-1.0)
    assert t.loc["G2", "rate_km2_per_yr"] == pytest.approx(-0.1)
    assert t.loc["G2", "rate_pct_per_yr"] == pytest.approx(-5.0)
    assert t["dt_yr"].tolist() == [20, 5]
    # no ensemble spread -> NaN uncertainty
    assert t["rate_sd_km2_per_yr"].isna().all()


def test_rate_uncertainty_from_ensemble_spread():
    df = table(row("G1", p_inv=10.0, p_rec=9.0, sd0=0.3, sd1=0.4, y0=2000, y1=2010))
    t = area_change_table(df, NO_EXTREME)
    assert t.loc[0, "rate_sd_km2_per_yr"] == pytest.approx(0.05)  # sqrt(.09+.16)/10
    assert t.loc[0, "rate_sd_pct_per_yr"] == pytest.approx(0.5)  # 100*0.05/10


def test_input_is_not_modified():
    df = table(row("G1"), row("G2"))
    before = df.copy()
    area_change_table(df)
    pd.testing.assert_frame_equal(df, before)


# --------------------------------------------------------------------------- masked correction


def test_masked_half_glacier_scaled_back_to_full_area():
    # outline 10 km2, half masked, the visible half (5 km2) fully predicted -> ~10 km2
    assert correct_masked_area(5.0, 0.5, 10.0, 0.9) == pytest.approx(10.0)
    # visible half 80 % glacier -> masked half assumed 80 % too
    assert correct_masked_area(4.0, 0.5, 10.0, 0.9) == pytest.approx(8.0)
    # nothing masked -> unchanged
    assert correct_masked_area(7.3, 0.0, 10.0, 0.9) == pytest.approx(7.3)
    # nothing visible -> fall back on the test recall
    assert correct_masked_area(0.0, 1.0, 10.0, 0.8) == pytest.approx(8.0)
    # vectorised
    out = correct_masked_area(np.array([5.0, 7.0]), np.array([0.5, 0.0]), np.array([10.0, 10.0]), 0.9)
    np.testing.assert_allclose(out, [10.0, 7.0])


def test_masked_correction_in_table_and_switch_off():
    df = table(row("G1", a_out=10.0, p_inv=10.0, p_rec=5.0, m0=0.0, m1=0.5))
    on = area_change_table(df, AreaChangeConfig(drop_extreme_frac=0.0, max_masked_frac=0.6))
    assert on.loc[0, "area_recent_km2"] == pytest.approx(10.0)
    assert on.loc[0, "rate_km2_per_yr"] == pytest.approx(0.0)
    off = area_change_table(df, AreaChangeConfig(drop_extreme_frac=0.0, max_masked_frac=0.6,
                                                 correct_masked=False))
    assert off.loc[0, "area_recent_km2"] == pytest.approx(5.0)
    assert off.loc[0, "rate_km2_per_yr"] == pytest.approx(-0.5)


# --------------------------------------------------------------------------- filters


def test_each_filter_flags_exactly_its_rows():
    df = table(
        row("ok"),
        row("small", a_out=0.05),
        row("lowrec", recall=0.5),
        row("nanrec", recall=np.nan),
        row("masked_inv", m0=0.25),
        row("masked_rec", m1=0.3),
        row("edge", a_out=0.1, recall=0.75, m0=0.2, m1=0.2),  # exactly at thresholds: kept
    )
    t = area_change_table(df, NO_EXTREME).set_index("glacier_id")
    assert set(t.index[t["flag_small"]]) == {"small"}
    assert set(t.index[t["flag_low_recall"]]) == {"lowrec", "nanrec"}
    assert set(t.index[t["flag_masked"]]) == {"masked_inv", "masked_rec"}
    assert not t["flag_extreme"].any()
    assert not t["flag_no_rate"].any()
    assert set(t.index[t["kept"]]) == {"ok", "edge"}
    s = regional_summary(t.reset_index())
    assert (s["n_total"], s["n_kept"], s["n_small"], s["n_low_recall"], s["n_masked"],
            s["n_extreme"]) == (7, 2, 1, 2, 2, 0)


def test_zero_predicted_inventory_area_has_no_rate():
    df = table(row("zero", p_inv=0.0, p_rec=0.0, recall=0.9), row("ok"))
    t = area_change_table(df, NO_EXTREME).set_index("glacier_id")
    assert t.loc["zero", "flag_no_rate"] and not t.loc["zero", "kept"]
    assert t.loc["ok", "kept"]


def test_extreme_filter_drops_planted_outlier():
    rng = np.random.default_rng(0)
    rows = [row(f"G{i}", a_out=5.0, p_inv=5.0, p_rec=5.0 * (1 - 0.1 * (1 + 0.2 * rng.random())))
            for i in range(19)]
    rows.append(row("OUT", a_out=5.0, p_inv=5.0, p_rec=20.0))  # +30 %/yr
    t = area_change_table(table(*rows), AreaChangeConfig()).set_index("glacier_id")
    assert t["flag_extreme"].sum() == 1  # floor(0.05 * 20)
    assert t.loc["OUT", "flag_extreme"] and not t.loc["OUT", "kept"]
    assert t["kept"].sum() == 19


def test_extreme_filter_is_two_sided_and_ignores_already_filtered():
    rows = [row(f"G{i}", p_inv=10.0, p_rec=9.0) for i in range(38)]
    rows.append(row("GROW", p_inv=10.0, p_rec=30.0))  # +20 %/yr
    rows.append(row("SHRINK", p_inv=10.0, p_rec=0.5))  # -9.5 %/yr
    rows.append(row("SMALLWILD", a_out=0.05, p_inv=0.05, p_rec=1.0))  # small: not counted
    t = area_change_table(table(*rows), AreaChangeConfig()).set_index("glacier_id")
    assert set(t.index[t["flag_extreme"]]) == {"GROW", "SHRINK"}  # floor(0.05 * 40) = 2
    assert not t.loc["SMALLWILD", "flag_extreme"]


# --------------------------------------------------------------------------- regional


def test_regional_rate_from_summed_areas():
    df = table(
        row("BIG", a_out=100.0, p_inv=100.0, p_rec=90.0, y0=2000, y1=2010),   # -1 %/yr
        row("SMALL", a_out=1.0, p_inv=1.0, p_rec=0.5, y0=2000, y1=2010),     # -5 %/yr
    )
    t = area_change_table(df, NO_EXTREME)
    s = regional_summary(t)
    hand = 100.0 * (90.0 + 0.5 - 100.0 - 1.0) / ((100.0 + 1.0) * 10)
    assert s["rate_pct_per_yr"] == pytest.approx(hand)
    assert s["rate_pct_per_yr"] == pytest.approx(-1.0396039604)
    assert s["mean_glacier_rate_pct_per_yr"] == pytest.approx(-3.0)
    assert s["median_glacier_rate_pct_per_yr"] == pytest.approx(-3.0)
    assert abs(s["rate_pct_per_yr"] - s["mean_glacier_rate_pct_per_yr"]) > 1.0
    assert s["rate_km2_per_yr"] == pytest.approx(-1.05)
    assert s["area_inv_kept_km2"] == pytest.approx(101.0)
    assert s["area_recent_kept_km2"] == pytest.approx(90.5)
    assert s["rate_sd_pct_per_yr"] is None  # no ensemble spreads


def test_regional_rate_weights_by_own_time_span():
    df = table(row("A", a_out=10.0, p_inv=10.0, p_rec=9.0, y0=2000, y1=2010),
               row("B", a_out=10.0, p_inv=10.0, p_rec=8.0, y0=2000, y1=2020))
    s = regional_summary(area_change_table(df, NO_EXTREME))
    assert s["rate_pct_per_yr"] == pytest.approx(100 * (-1 - 2) / (10 * 10 + 10 * 20))


def test_compare_with_truth():
    df = table(row("A", p_inv=10.0, p_rec=9.0), row("B", p_inv=10.0, p_rec=8.0),
               row("C", p_inv=10.0, p_rec=9.5), row("X", recall=0.1))  # X not kept
    t = area_change_table(df, NO_EXTREME)  # rates -1, -2, -0.5
    truth = pd.DataFrame({"glacier_id": ["A", "B", "C", "X"],
                          "true_rate_pct_per_yr": [-1.5, -2.5, -1.0, 50.0]})
    c = compare_with_truth(t, truth)
    assert c["n"] == 3
    assert c["pearson_r"] == pytest.approx(1.0)
    assert c["bias"] == pytest.approx(0.5)
    assert c["mae"] == pytest.approx(0.5)
    assert "kept_true_rate_pct_per_yr" not in c  # no true areas given
    with pytest.raises(InputDataError, match="true_rate_pct_per_yr"):
        compare_with_truth(t, truth.rename(columns={"true_rate_pct_per_yr": "x"}))


def test_compare_with_truth_splits_selection_from_model_error():
    df = table(row("A", a_out=10.0, p_inv=11.0, p_rec=10.0), row("B", a_out=2.0, p_inv=2.0, p_rec=1.0),
               row("X", recall=0.1))  # X not kept: its fast retreat must not enter the kept truth
    t = area_change_table(df, NO_EXTREME)
    truth = pd.DataFrame({"glacier_id": ["A", "B", "X"], "true_rate_pct_per_yr": [-2.0, -5.0, -9.0],
                          "area_inventory_km2": [10.0, 2.0, 10.0], "area_recent_km2": [8.0, 1.0, 1.0],
                          "dt_years": [10.0, 10.0, 10.0]})
    c = compare_with_truth(t, truth)
    assert c["kept_true_rate_pct_per_yr"] == pytest.approx(100 * (9.0 - 12.0) / (12.0 * 10))
    assert c["kept_area_error_inv_pct"] == pytest.approx(100 * (13.0 - 12.0) / 12.0)
    assert c["kept_area_error_recent_pct"] == pytest.approx(100 * (11.0 - 9.0) / 9.0)


# --------------------------------------------------------------------------- errors


def test_missing_column_error_names_it():
    df = table(row("A")).drop(columns=["recall_test", "year_inv"])
    with pytest.raises(InputDataError, match="recall_test") as e:
        area_change_table(df)
    assert "year_inv" in str(e.value)


def test_nan_area_is_an_error():
    with pytest.raises(InputDataError, match="pred_area_recent_km2"):
        area_change_table(table(row("A"), row("B", p_rec=np.nan)))


def test_recent_year_must_be_after_inventory_year():
    with pytest.raises(InputDataError, match="year_recent"):
        area_change_table(table(row("A"), row("B", y0=2015, y1=2015)))


def test_config_is_strict():
    with pytest.raises(ValidationError):
        AreaChangeConfig(min_recal=0.5)
    with pytest.raises(ValidationError):
        AreaChangeConfig(drop_extreme_frac=0.7)


# --------------------------------------------------------------------------- outputs


def _realistic_table():
    rng = np.random.default_rng(1)
    n = 60
    a = np.exp(rng.uniform(np.log(0.05), np.log(40.0), n))
    p_inv = a * rng.uniform(0.8, 1.05, n)
    p_rec = p_inv * (1 - 0.1 * rng.uniform(0.2, 2.0, n))
    df = pd.DataFrame({
        "glacier_id": [f"RGI-{i:03d}" for i in range(n)], "area_inventory_km2": a,
        "year_inv": 2003, "year_recent": 2023, "pred_area_inv_km2": p_inv,
        "pred_area_recent_km2": p_rec, "masked_frac_inv": rng.uniform(0, 0.3, n),
        "masked_frac_recent": rng.uniform(0, 0.3, n), "recall_test": rng.uniform(0.6, 1.0, n),
        "pred_std_inv_km2": 0.02 * p_inv, "pred_std_recent_km2": 0.02 * p_rec,
    })
    return area_change_table(df)


def test_write_outputs(tmp_path):
    t = _realistic_table()
    s = regional_summary(t)
    paths = write_outputs(t, s, tmp_path / "out")
    back = pd.read_csv(paths["table"])
    assert len(back) == len(t) and "rate_pct_per_yr" in back.columns
    js = json.loads(paths["summary"].read_text())  # strict JSON (no NaN)
    assert js["n_total"] == 60 and js["n_kept"] == int(t["kept"].sum())
    assert math.isfinite(js["rate_pct_per_yr"]) and math.isfinite(js["rate_sd_pct_per_yr"])
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_figures_are_valid_pngs(tmp_path):
    t = _realistic_table()
    for fn, name in ((rate_by_size_class_figure, "size.png"), (area_scatter_figure, "scatter.png")):
        p = fn(t, tmp_path / "figs" / name)
        assert p == tmp_path / "figs" / name
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 10_000
    assert not list((tmp_path / "figs").glob(".*tmp*"))


# ------------------------------------------------------- two inventories, no model (#15.8)
def _square(area_km2: float, lon: float, lat: float, crs: str, *, half: bool = False):
    """A square of `area_km2` (true area) centred on lon/lat, in `crs`; `half`: its western half."""
    import geopandas as gpd
    from shapely.geometry import box

    laea = f"+proj=laea +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m"
    s = math.sqrt(area_km2 * 1e6) / 2
    geom = box(-s, -s, 0 if half else s, s).segmentize(10.0)  # densified: straight in any projection
    return gpd.GeoSeries([geom], crs=laea).to_crs(crs).iloc[0]


def _inventory_file(path, rows: list[tuple], crs: str, columns=("gid", "year")):
    import geopandas as gpd

    gdf = gpd.GeoDataFrame({columns[0]: [r[0] for r in rows], columns[1]: [r[1] for r in rows]},
                           geometry=[_square(r[2], r[3], 46.8, crs) for r in rows], crs=crs)
    gdf.to_file(path)
    return path


def test_inventory_change_rate_between_two_dates(tmp_path, capsys, monkeypatch):
    """18.11 km2 in 1928 and 14.64 km2 in 2020 (files in EPSG:4326 and UTM 32N): -0.2083 %/yr,
    100 * (14.64 - 18.11) / (18.11 * 92). A glacier below 0.1 km2 is flagged small; one found in
    the old inventory only is listed, not counted as vanished."""
    from glaciermap import cli
    from glaciermap.analysis.inventory_change import inventory_change, read_inventory

    old = _inventory_file(tmp_path / "1928.gpkg", [("A", 1928, 18.11, 10.80), ("B", 1928, 0.08, 10.90),
                                                   ("C", 1928, 2.0, 11.00)], "EPSG:4326")
    new = _inventory_file(tmp_path / "2020.shp", [("A", 2020, 14.64, 10.80), ("B", 2020, 0.05, 10.90)],
                          "EPSG:32632")
    table, summary = inventory_change(read_inventory(old, "gid", "year"), read_inventory(new, "gid", "year"))
    a = table.set_index("glacier_id").loc["A"]
    assert a.area_inventory_km2 == pytest.approx(18.11, rel=1e-5)  # equal-area, not degrees
    assert a.area_recent_km2 == pytest.approx(14.64, rel=1e-5)
    assert a.dt_yr == pytest.approx(92.0)
    assert a.rate_pct_per_yr == pytest.approx(-0.2083, abs=5e-5) and a.kept
    assert table.set_index("glacier_id").loc["B"].flag_small
    assert summary["rate_pct_per_yr"] == pytest.approx(-0.2083, abs=5e-5) and summary["n_kept"] == 1
    assert summary["only_in_old"] == ["C"] and summary["only_in_new"] == []
    # the command: same table, summary and size-class figure, written as one folder
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    out = tmp_path / "change"
    assert cli.main(["--params", str(params), "-q", "inventory-change", str(old), str(new), "--id-column", "gid",
                     "--date-column", "year", "--out", str(out)]) == 0
    assert "regional rate -0.208" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["area_change.csv", "area_change_summary.json",
                                                     "rate_by_size_class.png"]
    assert json.loads((out / "area_change_summary.json").read_text())["rate_pct_per_yr"] == pytest.approx(
        -0.2083, abs=5e-5)
    # a wrong column name is one clear line, and nothing is written
    code = cli.main(["--params", str(params), "-q", "inventory-change", str(old), str(new), "--id-column", "RGIId",
                     "--date-column", "year", "--out", str(tmp_path / "c2")])
    assert code == 2 and "column(s) ['RGIId'] missing" in capsys.readouterr().err
    assert not (tmp_path / "c2").exists()


def test_predicted_outlines_against_an_inventory_of_the_same_date(tmp_path, capsys, monkeypatch):
    """Glacier A predicted as the western half of its outline: area -50 %, IoU 0.5; B exactly: IoU 1."""
    import geopandas as gpd

    from glaciermap import cli

    inventory = _inventory_file(tmp_path / "manual.gpkg", [("A", 2023, 4.0, 10.8), ("B", 2023, 1.0, 10.9)],
                                "EPSG:4326", columns=("RGIId", "date"))
    pred = gpd.GeoDataFrame({"glacier_id": ["A", "B", "A"], "epoch": ["2023", "2023", "2015"]},
                            geometry=[_square(4.0, 10.8, 46.8, "EPSG:32632", half=True),
                                      _square(1.0, 10.9, 46.8, "EPSG:32632"),
                                      _square(4.0, 10.8, 46.8, "EPSG:32632")], crs="EPSG:32632")
    pred.to_file(tmp_path / "outlines.gpkg", layer="outlines")
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    argv = ["--params", str(params), "-q", "inventory-compare", "--predicted", str(tmp_path / "outlines.gpkg"),
            "--inventory", str(inventory), "--id-column", "RGIId", "--out", str(tmp_path / "cmp")]
    assert cli.main(argv) == 2  # two epochs: which one is the inventory's date?
    assert "predicted outlines of several epochs ['2015', '2023']" in capsys.readouterr().err
    assert cli.main(argv + ["--epoch", "2023"]) == 0
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv").set_index("glacier_id")
    assert table.loc["A", "area_inventory_km2"] == pytest.approx(4.0, rel=1e-5)
    assert table.loc["A", "area_diff_pct"] == pytest.approx(-50.0, abs=1e-3)
    assert table.loc["A", "iou"] == pytest.approx(0.5, abs=1e-4)
    assert table.loc["B", "iou"] == pytest.approx(1.0, abs=1e-4)
    summary = json.loads((tmp_path / "cmp" / "comparison_summary.json").read_text())
    assert summary["n"] == 2 and summary["iou_mean"] == pytest.approx(0.75, abs=1e-4)
    assert summary["total_area_diff_pct"] == pytest.approx(-40.0, abs=1e-3)
