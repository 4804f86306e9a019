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
    class_rates,
    compare_with_truth,
    correct_masked_area,
    regional_summary,
    write_outputs,
)
from glaciermap.analysis.change_figures import area_scatter_figure, rate_by_size_class_figure
from glaciermap.errors import InputDataError

NO_EXTREME = AreaChangeConfig(drop_extreme_frac=0.0)


def row(gid, a_out=10.0, p_inv=None, p_rec=None, y0=2000, y1=2010, m0=0.0, m1=0.0, recall=0.9,
        s0=np.nan, s1=np.nan):
    """One glacier of infer's table; `s0`, `s1`: half-widths of the area bounds (A_lo, A_hi) = A -+ s."""
    p_inv = a_out if p_inv is None else p_inv
    p_rec = (0.9 * a_out) if p_rec is None else p_rec
    return {
        "glacier_id": gid, "area_inventory_km2": a_out, "year_inv": y0, "year_recent": y1,
        "pred_area_inv_km2": p_inv, "pred_area_recent_km2": p_rec,
        "masked_frac_inv": m0, "masked_frac_recent": m1, "recall_test": recall,
        "area_lo_inv_km2": p_inv - s0, "area_hi_inv_km2": p_inv + s0,
        "area_lo_recent_km2": p_rec - s1, "area_hi_recent_km2": p_rec + s1,
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
    # no area bounds -> NaN uncertainty
    assert t["rate_sigma_km2_per_yr"].isna().all() and t["snr"].isna().all()


def test_rate_sigma_from_area_bounds():
    # inventory bounds 9.4..10.6 -> sigma 0.6; recent 8.2..9.8 -> sigma 0.8 (no masking)
    df = table(row("G1", p_inv=10.0, p_rec=9.0, s0=0.6, s1=0.8, y0=2000, y1=2010))
    t = area_change_table(df, NO_EXTREME)
    assert t.loc[0, "sigma_inv_km2"] == pytest.approx(0.6)  # (10.6 - 9.4) / 2
    assert t.loc[0, "sigma_recent_km2"] == pytest.approx(0.8)
    assert t.loc[0, "rate_sigma_km2_per_yr"] == pytest.approx(0.1)  # sqrt(.36 + .64) / 10
    assert t.loc[0, "rate_sigma_pct_per_yr"] == pytest.approx(1.0)  # 100 * 0.1 / 10
    assert t.loc[0, "snr"] == pytest.approx(1.0)  # |-0.1| / 0.1


def test_sigma_scales_with_the_masked_correction():
    df = table(
        # recent: half masked, visible 4 of 5 km2 -> A = 8, scale 2; bounds 3.5..4.5 -> sigma 2 * 0.5 = 1
        row("M", a_out=10.0, p_inv=10.0, p_rec=4.0, m1=0.5, s0=0.4, s1=0.5),
        # nothing predicted but bounds 0..1 on a half-masked outline: scale 1 / (1 - 0.5) = 2 -> sigma 1
        row("Z", a_out=10.0, p_inv=10.0, p_rec=0.0, m1=0.5, s0=0.4, s1=np.nan),
        # all masked: the area comes from the recall, its sigma is unknown
        row("ALL", a_out=10.0, p_inv=10.0, p_rec=0.0, m1=1.0, s0=0.4, s1=0.0),
    )
    df.loc[1, ["area_lo_recent_km2", "area_hi_recent_km2"]] = [0.0, 1.0]
    on = area_change_table(df, AreaChangeConfig(drop_extreme_frac=0.0, max_masked_frac=1.0)).set_index("glacier_id")
    assert on.loc["M", "area_recent_km2"] == pytest.approx(8.0)
    assert on.loc["M", "sigma_recent_km2"] == pytest.approx(1.0)
    assert on.loc["M", "sigma_inv_km2"] == pytest.approx(0.4)  # nothing masked: unscaled
    assert on.loc["M", "rate_km2_per_yr"] == pytest.approx(-0.2)  # (8 - 10) / 10
    assert on.loc["M", "rate_sigma_km2_per_yr"] == pytest.approx(math.sqrt(0.4**2 + 1.0**2) / 10)  # 0.10770
    assert on.loc["M", "rate_sigma_pct_per_yr"] == pytest.approx(100 * math.sqrt(1.16) / 10 / 10)  # 1.0770
    assert on.loc["Z", "sigma_recent_km2"] == pytest.approx(1.0)
    assert math.isnan(on.loc["ALL", "sigma_recent_km2"]) and math.isnan(on.loc["ALL", "rate_sigma_pct_per_yr"])
    off = area_change_table(df, AreaChangeConfig(drop_extreme_frac=0.0, max_masked_frac=1.0, correct_masked=False))
    assert off.set_index("glacier_id").loc["M", "sigma_recent_km2"] == pytest.approx(0.5)  # (4.5 - 3.5) / 2


def test_bounds_must_bracket_nonnegative():
    df = table(row("A", s0=0.5, s1=0.5), row("B", s0=0.5, s1=0.5))
    df.loc[1, "area_hi_recent_km2"] = df.loc[1, "area_lo_recent_km2"] - 0.1
    with pytest.raises(InputDataError, match="area_lo_recent_km2 <= area_hi_recent_km2.*'B'"):
        area_change_table(df)


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
    assert s["rate_sigma_pct_per_yr"] is None  # no area bounds
    assert s["rate_sigma_correlated_pct_per_yr"] is None and s["rate_sigma_km2_per_yr"] is None


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


def test_glacier_cover_within_one_and_two_sigma():
    # 10 -> A km2 over 10 yr with bounds +-0.3 / +-0.4: rate sigma 100 * 0.05 / 10 = 0.5 %/yr for all four
    df = table(row("A", p_inv=10.0, p_rec=9.0, s0=0.3, s1=0.4),    # -1 %/yr, true -1.4: |err| 0.4 <= 1 sigma
               row("B", p_inv=10.0, p_rec=8.0, s0=0.3, s1=0.4),    # -2 %/yr, true -2.9: 0.9, within 2 sigma only
               row("C", p_inv=10.0, p_rec=9.5, s0=0.3, s1=0.4),    # -0.5 %/yr, true 0.6: 1.1, outside 2 sigma
               row("D", p_inv=10.0, p_rec=9.0, s0=0.3, s1=0.4),    # -1 %/yr, true -1: 0
               row("X", recall=0.1, s0=0.3, s1=0.4))               # not kept: not counted
    t = area_change_table(df, NO_EXTREME)
    truth = pd.DataFrame({"glacier_id": ["A", "B", "C", "D", "X"],
                          "true_rate_pct_per_yr": [-1.4, -2.9, 0.6, -1.0, 50.0]})
    c = compare_with_truth(t, truth)
    assert c["n"] == c["n_with_sigma"] == 4
    assert c["glacier_cover_1sigma"] == pytest.approx(2 / 4)  # A, D
    assert c["glacier_cover_2sigma"] == pytest.approx(3 / 4)  # A, B, D
    no_bounds = compare_with_truth(area_change_table(table(row("A"), row("B")), NO_EXTREME), truth)
    assert no_bounds["n_with_sigma"] == 0 and no_bounds["glacier_cover_1sigma"] is None


def test_truth_check_gives_kept_and_regionwide_errors_against_the_all_glacier_truth():
    from glaciermap.analysis.area_change_stage import truth_check

    t = area_change_table(_classes_table().iloc[[0, 1, 2, 4, 5]], NO_EXTREME)
    s = regional_summary(t)
    truth = pd.DataFrame({"glacier_id": ["K1", "K2", "K3"], "true_rate_pct_per_yr": [-1.0, -2.0, -1.0]})
    c = truth_check(t, s, (truth, -1.5))
    assert c["true_regional_rate_pct_per_yr"] == -1.5
    assert c["regional_rate_error_pct_per_yr"] == pytest.approx(-1.136364 + 1.5, abs=1e-6)
    assert c["regionwide_rate_error_pct_per_yr"] == pytest.approx(-1.162487 + 1.5, abs=1e-6)


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


def test_snr_and_inventory_recall_filters_flag_and_say_why():
    # every glacier: 10 km2 over 10 yr; bounds +-0.75 / +-1.0 km2 -> rate sigma sqrt(.5625 + 1) / 10 = 0.125 km2/yr
    # (binary-exact numbers, so that A sits exactly on the threshold)
    df = table(
        row("A", p_inv=10.0, p_rec=8.75, s0=0.75, s1=1.0),    # rate -0.125 km2/yr: SNR 1.0, at the threshold: kept
        row("B", p_inv=10.0, p_rec=9.9, s0=0.75, s1=1.0),     # rate -0.01: SNR 0.08 -> low_snr
        row("C", p_inv=10.0, p_rec=9.0),                      # no bounds: sigma unknown -> low_snr
        row("D", p_inv=10.0, p_rec=8.75, s0=0.75, s1=1.0, recall=0.8),  # 0.75 <= 0.8 < 0.9
        row("E", p_inv=10.0, p_rec=9.9, s0=0.75, s1=1.0, recall=0.5),   # three reasons at once
    )
    t = area_change_table(df, AreaChangeConfig(drop_extreme_frac=0.0, min_snr=1.0,
                                               min_inventory_recall=0.9)).set_index("glacier_id")
    assert t["snr"].tolist()[:2] == pytest.approx([1.0, 0.08])
    assert set(t.index[t["flag_low_snr"]]) == {"B", "C", "E"}
    assert set(t.index[t["flag_low_inventory_recall"]]) == {"D", "E"}
    assert t["reason"].to_dict() == {"A": "kept", "B": "low_snr", "C": "low_snr", "D": "low_inventory_recall",
                                     "E": "low_recall+low_inventory_recall+low_snr"}
    assert t.index[t["kept"]].tolist() == ["A"]
    s = regional_summary(t.reset_index())
    assert (s["n_low_snr"], s["n_low_inventory_recall"], s["n_low_recall"]) == (3, 2, 1)
    # defaults: both filters off, the same glaciers all kept except the paper's low recall (E)
    t0 = area_change_table(df, NO_EXTREME).set_index("glacier_id")
    assert t0.index[t0["kept"]].tolist() == ["A", "B", "C", "D"]
    assert not t0["flag_low_snr"].any() and not t0["flag_low_inventory_recall"].any()
    assert t0.loc["E", "reason"] == "low_recall"


def test_regional_sigma_independent_and_fully_correlated():
    df = table(
        # A: 10 -> 9 km2 over 10 yr, bounds +-0.3 / +-0.4: sigma of the change s_A = sqrt(.09 + .16) = 0.5 km2
        row("A", a_out=10.0, p_inv=10.0, p_rec=9.0, y0=2000, y1=2010, s0=0.3, s1=0.4),
        # B: 10 -> 8 km2 over 20 yr, bounds +-0.6 / +-0.8: s_B = 1.0 km2
        row("B", a_out=10.0, p_inv=10.0, p_rec=8.0, y0=2000, y1=2020, s0=0.6, s1=0.8),
    )
    s = regional_summary(area_change_table(df, NO_EXTREME))
    # sum(A_inv * dt) = 10 * 10 + 10 * 20 = 300; rate = 100 * (-1 - 2) / 300 = -1
    assert s["rate_pct_per_yr"] == pytest.approx(-1.0)
    assert s["rate_sigma_independent_pct_per_yr"] == pytest.approx(100 * math.sqrt(0.5**2 + 1.0**2) / 300)  # 0.3727
    assert s["rate_sigma_correlated_pct_per_yr"] == pytest.approx(100 * (0.5 + 1.0) / 300)  # 0.5
    assert s["rate_sigma_pct_per_yr"] == s["rate_sigma_independent_pct_per_yr"]  # the headline
    # km2/yr: sigma_rate_A = 0.5 / 10 = 0.05, sigma_rate_B = 1.0 / 20 = 0.05
    assert s["rate_sigma_km2_per_yr"] == pytest.approx(math.sqrt(2) * 0.05)
    assert s["rate_sigma_correlated_km2_per_yr"] == pytest.approx(0.1)



def test_regional_sigma_with_measured_band_correlation_lies_between_the_extremes():
    # the glaciers of the test above (s_A = 0.5, s_B = 1.0 km2), band errors correlated by rho = 0.6:
    # B**2 = 0.4 * (0.25 + 1.0) + 0.6 * 1.5**2 = 0.5 + 1.35 = 1.85
    df = table(row("A", a_out=10.0, p_inv=10.0, p_rec=9.0, y0=2000, y1=2010, s0=0.3, s1=0.4),
               row("B", a_out=10.0, p_inv=10.0, p_rec=8.0, y0=2000, y1=2020, s0=0.6, s1=0.8))
    t = area_change_table(df, NO_EXTREME)
    s = regional_summary(t, AreaChangeConfig(band_correlation=0.6))
    assert s["rate_sigma_pct_per_yr"] == pytest.approx(100 * math.sqrt(1.85) / 300)  # 0.45338
    assert s["band_correlation"] == 0.6
    assert s["rate_sigma_independent_pct_per_yr"] < s["rate_sigma_pct_per_yr"] < s["rate_sigma_correlated_pct_per_yr"]
    # the parts the validity benchmark fits rho from
    assert s["rate_sigma_band_independent_pct_per_yr"] == pytest.approx(100 * math.sqrt(1.25) / 300)
    assert s["rate_sigma_band_correlated_pct_per_yr"] == pytest.approx(100 * 1.5 / 300)
    assert s["rate_sigma_missed_pct_per_yr"] == 0
    # km2/yr: 0.05 and 0.05 -> 0.4 * 0.005 + 0.6 * 0.01 = 0.008
    assert s["rate_sigma_km2_per_yr"] == pytest.approx(math.sqrt(0.008))
    # everything kept: the region-wide sigma is the same sum
    assert s["regionwide_sigma_pct_per_yr"] == pytest.approx(s["rate_sigma_pct_per_yr"])
    assert s["regionwide_change_sigma_km2_per_yr"] == pytest.approx(s["rate_sigma_km2_per_yr"])
    # the extremes: rho = 0 is the independent sigma, rho = 1 the aligned bands (missed ice 0 here)
    for rho, extreme in ((0.0, "independent"), (1.0, "correlated")):
        at = regional_summary(t, AreaChangeConfig(band_correlation=rho))["rate_sigma_pct_per_yr"]
        assert at == pytest.approx(s[f"rate_sigma_{extreme}_pct_per_yr"])
    for bad in ({"band_correlation": -0.1}, {"band_correlation": 1.5}, {"sigma_scale": 0.0},
                {"discrepancy_pct_per_yr": -0.1}):
        with pytest.raises(ValidationError):
            AreaChangeConfig(**bad)


def test_sigma_scale_and_regional_discrepancy_by_hand():
    # the same two glaciers, k = sigma_scale = 0.5, tau = discrepancy 0.3 %/yr, rho = 0:
    # per glacier: A 0.5 km2 / 10 yr = 0.05 km2/yr -> 0.025, 0.25 %/yr of 10 km2; B likewise 0.025, 0.25
    # regional: S = sqrt((0.5 * 100 * sqrt(1.25) / 300)**2 + 0.3**2) = sqrt(0.0347222 + 0.09) = 0.353160
    # km2/yr: sqrt((0.5 * sqrt(2) * 0.05)**2 + (0.3 / 100 * 20)**2) = sqrt(0.00125 + 0.0036) = 0.069642
    df = table(row("A", a_out=10.0, p_inv=10.0, p_rec=9.0, y0=2000, y1=2010, s0=0.3, s1=0.4),
               row("B", a_out=10.0, p_inv=10.0, p_rec=8.0, y0=2000, y1=2020, s0=0.6, s1=0.8))
    cfg = AreaChangeConfig(drop_extreme_frac=0.0, sigma_scale=0.5, discrepancy_pct_per_yr=0.3)
    t = area_change_table(df, cfg).set_index("glacier_id")
    assert t["rate_sigma_km2_per_yr"].tolist() == pytest.approx([0.025, 0.025])
    assert t["rate_sigma_pct_per_yr"].tolist() == pytest.approx([0.25, 0.25])
    assert t["sigma_change_band_km2"].tolist() == pytest.approx([0.5, 1.0])  # the bands themselves, unscaled
    s = regional_summary(t.reset_index(), cfg)
    assert s["rate_sigma_pct_per_yr"] == pytest.approx(0.353160, abs=1e-6)
    assert s["rate_sigma_independent_pct_per_yr"] == s["rate_sigma_pct_per_yr"]
    assert s["rate_sigma_correlated_pct_per_yr"] == pytest.approx(math.hypot(0.5 * 0.5, 0.3))
    assert s["rate_sigma_km2_per_yr"] == pytest.approx(0.069642, abs=1e-6)
    # the parts stay those of the bands (what the validity benchmark fits k, rho and tau from)
    assert s["rate_sigma_band_independent_pct_per_yr"] == pytest.approx(100 * math.sqrt(1.25) / 300)
    assert (s["sigma_scale"], s["band_correlation"], s["discrepancy_pct_per_yr"]) == (0.5, 0.0, 0.3)
    # everything kept: the region-wide sigma is the same
    assert s["regionwide_sigma_pct_per_yr"] == pytest.approx(s["rate_sigma_pct_per_yr"])
    assert s["regionwide_change_sigma_km2_per_yr"] == pytest.approx(s["rate_sigma_km2_per_yr"])


def test_regionwide_sigma_correlates_the_kept_bands_only():
    # K1, K2, K3 kept (band sigmas 0.005, 0.005, 0.05 km2/yr), D_mid and D_tiny extrapolated
    # (0.0106066, 0.00035355 km2/yr, independent: each glacier's scatter about its class rate)
    t = area_change_table(_classes_table().iloc[[0, 1, 2, 4, 5]], NO_EXTREME)
    s = regional_summary(t, AreaChangeConfig(band_correlation=0.5))
    kept, dropped = [0.005, 0.005, 0.05], [1.5 * math.sqrt(0.5) / 100, 0.05 * math.sqrt(0.5) / 100]
    var = 0.5 * sum(x**2 for x in kept) + 0.5 * sum(kept) ** 2 + sum(x**2 for x in dropped)
    assert s["regionwide_change_sigma_km2_per_yr"] == pytest.approx(math.sqrt(var))
    assert s["regionwide_sigma_pct_per_yr"] == pytest.approx(100 * 10 * math.sqrt(var) / 59.5)



# ------------------------------------------------------------ ice missed in the inventory year
UNIFORM = AreaChangeConfig(drop_extreme_frac=0.0, missed_ice="uniform")


def test_missed_ice_uniform_counts_half_the_missed_ice_as_gone_with_its_sigma():
    # outline 10 km2, the model finds 8 of it (M0 = 2) and 7 in the recent year, 10 yr apart;
    # bounds +-0.3 / +-0.4 km2. Half of M0 gone: change = 7 - 8 - 1 = -2 km2 = 7 - (8 + 10) / 2,
    # so the inventory bound enters at half weight: s = sqrt(0.15**2 + 0.4**2) = sqrt(0.1825)
    df = table(row("A", a_out=10.0, p_inv=8.0, p_rec=7.0, s0=0.3, s1=0.4))
    t = area_change_table(df, UNIFORM).iloc[0]
    assert t["missed_inv_km2"] == pytest.approx(2.0)
    assert t["missed_gone_km2"] == pytest.approx(1.0)
    assert t["sigma_missed_km2"] == pytest.approx(2.0 / math.sqrt(12))  # 0.57735
    assert t["area_base_km2"] == pytest.approx(10.0)  # the outline's own area
    assert t["change_km2"] == pytest.approx(-2.0)
    assert t["rate_km2_per_yr"] == pytest.approx(-0.2)
    assert t["rate_pct_per_yr"] == pytest.approx(-2.0)  # 100 * -0.2 / 10
    assert t["sigma_change_band_km2"] == pytest.approx(math.sqrt(0.1825))
    assert t["rate_sigma_km2_per_yr"] == pytest.approx(math.sqrt(0.1825 + 4 / 12) / 10)  # 0.071880
    assert t["rate_sigma_pct_per_yr"] == pytest.approx(100 * math.sqrt(0.1825 + 4 / 12) / 10 / 10)
    # the half weight is the derivative: moving A_inv's bound by d moves the change by d / 2
    shifted = area_change_table(table(row("A", a_out=10.0, p_inv=8.3, p_rec=7.0)), UNIFORM).iloc[0]
    assert shifted["change_km2"] - t["change_km2"] == pytest.approx(-0.15)
    # proportional (DL4GAM, the default): the predicted change relative to the predicted area
    p = area_change_table(df, NO_EXTREME).iloc[0]
    assert p["change_km2"] == pytest.approx(-1.0) and p["rate_pct_per_yr"] == pytest.approx(-1.25)
    assert p["missed_inv_km2"] == pytest.approx(2.0) and p["missed_gone_km2"] == 0 and p["sigma_missed_km2"] == 0
    assert p["rate_sigma_km2_per_yr"] == pytest.approx(0.05)
    # nothing missed: the two agree (the inventory bound at full weight in both)
    full = table(row("F", a_out=10.0, p_inv=10.0, p_rec=9.0, s0=0.3, s1=0.4))
    a, b = area_change_table(full, UNIFORM).iloc[0], area_change_table(full, NO_EXTREME).iloc[0]
    for c in ("rate_pct_per_yr", "rate_sigma_pct_per_yr", "change_km2"):
        assert a[c] == pytest.approx(b[c])


def test_missed_ice_uniform_regional_sigma_adds_the_shared_share_in_full():
    df = table(
        # A: outline 10, found 8 -> 7 (M0 = 2, m = 2 / sqrt 12), 10 yr; change -2,
        #    s = sqrt((0.3 / 2)**2 + 0.4**2) (the inventory bound at half weight)
        row("A", a_out=10.0, p_inv=8.0, p_rec=7.0, s0=0.3, s1=0.4),
        # B: outline 5, found 4 -> 3 (M0 = 1, m = 1 / sqrt 12), 20 yr; change -1.5,
        #    s = sqrt((0.6 / 2)**2 + 0.8**2)
        row("B", a_out=5.0, p_inv=4.0, p_rec=3.0, y1=2020, s0=0.6, s1=0.8),
    )
    s_a, s_b = math.sqrt(0.15**2 + 0.4**2), math.sqrt(0.3**2 + 0.8**2)
    s = regional_summary(area_change_table(df, UNIFORM))
    denom = 10 * 10 + 5 * 20  # outline areas x dt
    m = 3 / math.sqrt(12)  # m_A + m_B: one unknown share g for both
    assert s["rate_pct_per_yr"] == pytest.approx(100 * (-2.0 - 1.5) / denom)  # -1.75
    assert s["rate_sigma_independent_pct_per_yr"] == pytest.approx(100 * math.sqrt(s_a**2 + s_b**2 + m**2) / denom)
    assert s["rate_sigma_correlated_pct_per_yr"] == pytest.approx(100 * (s_a + s_b + m) / denom)
    assert s["rate_sigma_pct_per_yr"] == s["rate_sigma_independent_pct_per_yr"]
    # km2/yr: bands s_a / 10 and s_b / 20, missed 2 / sqrt 12 / 10 + 1 / sqrt 12 / 20
    m_yr = (2 / 10 + 1 / 20) / math.sqrt(12)
    assert s["rate_sigma_km2_per_yr"] == pytest.approx(math.sqrt((s_a / 10) ** 2 + (s_b / 20) ** 2 + m_yr**2))
    assert s["missed_inv_kept_km2"] == pytest.approx(3.0) and s["missed_gone_kept_km2"] == pytest.approx(1.5)
    # region-wide with everything kept: the same rate, and the same sigma
    assert s["regionwide_rate_pct_per_yr"] == pytest.approx(s["rate_pct_per_yr"])
    assert s["regionwide_sigma_pct_per_yr"] == pytest.approx(s["rate_sigma_independent_pct_per_yr"])
    assert s["regionwide_change_sigma_km2_per_yr"] == pytest.approx(s["rate_sigma_km2_per_yr"])


def test_missed_ice_is_a_validated_choice():
    with pytest.raises(ValidationError):
        AreaChangeConfig(missed_ice="half")


# ----------------------------------------------------------------- extrapolation

def _classes_table():
    """Kept: two glaciers in class 0.5-1 and two in 2-5 (10 yr); dropped: one per kind of class."""
    return table(
        row("K1", a_out=0.8, p_inv=0.8, p_rec=0.72, s0=0.03, s1=0.04),   # -1 %/yr
        row("K2", a_out=0.6, p_inv=0.6, p_rec=0.48, s0=0.03, s1=0.04),   # -2 %/yr
        row("K3", a_out=3.0, p_inv=3.0, p_rec=2.7, s0=0.3, s1=0.4),      # -1 %/yr
        row("K4", a_out=4.0, p_inv=4.0, p_rec=3.8, s0=0.3, s1=0.4),      # -0.5 %/yr
        row("D_mid", a_out=1.5, recall=0.1),   # class 1-2: no kept glacier, between 0.5-1 and 2-5
        row("D_tiny", a_out=0.05),             # class <0.1 (small): below the first class with data
        row("D_big", a_out=30.0, recall=0.1),  # class >20: above the last class with data
        row("D_in", a_out=0.7, recall=0.1),    # class 0.5-1: its kept glaciers' rate
    )


def test_class_rates_interpolate_in_log_centre_and_stay_constant_beyond_the_ends():
    t = area_change_table(_classes_table(), NO_EXTREME).set_index("glacier_id")
    c = class_rates(t.reset_index()).set_index("size_class")
    r_05 = 100 * (-0.08 - 0.12) / ((0.8 + 0.6) * 10)   # -1.428571, area-weighted, not mean(-1, -2)
    r_25 = 100 * (-0.3 - 0.2) / ((3.0 + 4.0) * 10)     # -0.714286
    assert c.loc["0.5-1", "rate_pct_per_yr"] == pytest.approx(r_05)
    assert c.loc["2-5", "rate_pct_per_yr"] == pytest.approx(r_25)
    # 1-2 at log(sqrt(1*2)), between log(sqrt(.5*1)) and log(sqrt(2*5)):
    # w = ln(sqrt2 / sqrt.5) / ln(sqrt10 / sqrt.5) = ln 2 / ln sqrt20 = 0.693147 / 1.497866 = 0.462756
    w = math.log(2) / math.log(math.sqrt(20))
    assert c.loc["1-2", "rate_pct_per_yr"] == pytest.approx(r_05 + w * (r_25 - r_05))  # -1.098031
    assert c.loc["1-2", "rate_pct_per_yr"] == pytest.approx(-1.098031, abs=1e-6)
    assert c.loc["<0.1", "rate_pct_per_yr"] == pytest.approx(r_05)  # constant below
    assert c.loc[">20", "rate_pct_per_yr"] == pytest.approx(r_25)   # constant above
    assert c["interpolated"].to_dict() == {lab: lab not in ("0.5-1", "2-5") for lab in c.index}
    # spread: std(-1, -2) = 0.707107, std(-1, -0.5) = 0.353553; pooled sqrt((.5 + .125) / 2) = 0.559017
    assert c.loc["0.5-1", "sd_pct_per_yr"] == pytest.approx(math.sqrt(0.5))
    assert c.loc["2-5", "sd_pct_per_yr"] == pytest.approx(math.sqrt(0.125))
    assert c.loc["1-2", "sd_pct_per_yr"] == pytest.approx(math.sqrt(0.3125))
    # every dropped glacier gets its class's rate and spread; kept ones none
    assert t.loc["D_mid", "extrapolated_rate_pct_per_yr"] == pytest.approx(r_05 + w * (r_25 - r_05))
    assert t.loc["D_tiny", "extrapolated_rate_pct_per_yr"] == pytest.approx(r_05)
    assert t.loc["D_big", "extrapolated_rate_pct_per_yr"] == pytest.approx(r_25)
    assert t.loc["D_in", "extrapolated_rate_pct_per_yr"] == pytest.approx(r_05)
    assert t.loc["D_in", "extrapolated_sigma_pct_per_yr"] == pytest.approx(math.sqrt(0.5))
    assert t.loc["D_big", "extrapolated_sigma_pct_per_yr"] == pytest.approx(math.sqrt(0.3125))
    assert t.loc[["K1", "K2", "K3", "K4"], "extrapolated_rate_pct_per_yr"].isna().all()


def test_regionwide_rate_and_sigma_on_five_glaciers():
    t = area_change_table(_classes_table().iloc[[0, 1, 2, 4, 5]], NO_EXTREME)  # K1, K2, K3, D_mid, D_tiny
    s = regional_summary(t)
    # class rates: 0.5-1: -1.428571 (K1, K2); 2-5: -1.0 (K3 alone); 1-2 interpolated:
    #   -1.428571 + 0.462756 * (-1.0 + 1.428571) = -1.230247; <0.1: -1.428571 (constant below)
    r_05, r_25 = 100 * -0.2 / 14, -1.0
    r_12 = r_05 + math.log(2) / math.log(math.sqrt(20)) * (r_25 - r_05)
    # changes over dt = 10 yr (km2): K1 -0.08, K2 -0.12, K3 -0.3, D_mid 1.5 * r_12 / 100 * 10 = -0.184537,
    #   D_tiny 0.05 * r_05 / 100 * 10 = -0.007143 -> sum -0.691680
    change = -0.08 - 0.12 - 0.3 + 1.5 * r_12 / 10 + 0.05 * r_05 / 10
    # weights A * dt: 8 + 6 + 30 + 15 + 0.5 = 59.5
    assert s["regionwide_rate_pct_per_yr"] == pytest.approx(100 * change / 59.5)
    assert s["regionwide_rate_pct_per_yr"] == pytest.approx(-1.162487, abs=1e-6)
    assert s["regionwide_change_km2_per_yr"] == pytest.approx(change / 10)
    # sigmas (km2/yr): K1, K2 sqrt(.03^2 + .04^2) / 10 = 0.005, K3 0.05; extrapolated: A_out * pooled std / 100,
    #   pooled std = std(-1, -2) = 0.707107 (the only class with two kept): D_mid 0.0106066, D_tiny 0.00035355
    sig = [0.005, 0.005, 0.05, 1.5 * math.sqrt(0.5) / 100, 0.05 * math.sqrt(0.5) / 100]
    assert s["regionwide_change_sigma_km2_per_yr"] == pytest.approx(math.sqrt(sum(x**2 for x in sig)))  # 0.0516
    assert s["regionwide_sigma_pct_per_yr"] == pytest.approx(100 * 10 * math.sqrt(sum(x**2 for x in sig)) / 59.5)
    assert s["regionwide_sigma_pct_per_yr"] == pytest.approx(0.867237, abs=1e-6)
    assert s["n_extrapolated"] == 2 and s["n_kept"] == 3
    # the kept glaciers' own rate: 100 * (-0.5) / 44 = -1.136364
    assert s["rate_pct_per_yr"] == pytest.approx(-1.136364, abs=1e-6)


def test_nothing_kept_gives_no_rates_not_zeros():
    s = regional_summary(area_change_table(table(row("X", recall=0.1, s0=0.1, s1=0.1)), NO_EXTREME))
    assert s["n_kept"] == 0 and s["rate_pct_per_yr"] is None and s["rate_sigma_pct_per_yr"] is None
    assert s["rate_km2_per_yr"] is None and s["rate_sigma_km2_per_yr"] is None
    assert s["regionwide_rate_pct_per_yr"] is None and s["n_extrapolated"] == 0
    json.dumps(s, allow_nan=False)  # JSON-safe


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
    with pytest.raises(ValidationError):
        AreaChangeConfig(min_snr=-1)
    with pytest.raises(ValidationError):
        AreaChangeConfig(min_inventory_recall=1.5)
    assert (AreaChangeConfig().min_snr, AreaChangeConfig().min_inventory_recall) == (0.0, None)  # off


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
        "area_lo_inv_km2": 0.97 * p_inv, "area_hi_inv_km2": 1.03 * p_inv,
        "area_lo_recent_km2": 0.97 * p_rec, "area_hi_recent_km2": 1.03 * p_rec,
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
    assert math.isfinite(js["rate_pct_per_yr"]) and math.isfinite(js["rate_sigma_pct_per_yr"])
    assert math.isfinite(js["regionwide_rate_pct_per_yr"]) and math.isfinite(js["regionwide_sigma_pct_per_yr"])
    assert js["n_extrapolated"] == int((~t["kept"]).sum())
    assert [c["size_class"] for c in js["size_classes"]][:2] == ["<0.1", "0.1-0.2"]
    assert set(back["reason"]) >= {"kept"} and back.loc[~back["kept"], "reason"].ne("kept").all()
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


# ------------------------------------------- inference side: area bounds and the probability raster
def test_glacier_stats_counts_the_one_sigma_bounds_inside_the_visible_outline():
    from types import SimpleNamespace

    from glaciermap.inference.run import glacier_stats

    prob = np.array([[0.95, 0.85, 0.84],
                     [0.50, 0.30, 0.16],
                     [0.10, 0.90, 0.99]], np.float32)
    glacier = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 0]], np.uint8)  # 0.99 lies outside the outline
    invalid = np.array([[0, 0, 0], [0, 0, 0], [0, 1, 0]], np.uint8)  # 0.90 is under a cloud
    cube = SimpleNamespace(grid=SimpleNamespace(res=10.0), mask_glacier=glacier, mask_invalid=invalid,
                           mask_debris=None)  # no debris truth
    g = glacier_stats(prob, cube)
    px = 10.0**2 / 1e6  # km2 per pixel
    # visible outline pixels: .95 .85 .84 .50 .30 .16 .10 (7 of the outline's 8)
    assert g["pred_area_km2"] == pytest.approx(4 * px)     # >= 0.5: .95 .85 .84 .50
    assert g["pred_area_lo_km2"] == pytest.approx(2 * px)  # >= 0.8413: .95 .85 (0.84 is below)
    assert g["pred_area_hi_km2"] == pytest.approx(6 * px)  # >= 0.1587: all but .10
    assert g["masked_frac"] == pytest.approx(1 / 8)
    assert g["recall"] == pytest.approx(4 / 7)
    assert "pred_std_km2" not in g


def test_per_glacier_table_passes_the_bounds_of_both_epochs():
    from glaciermap.inference.run import per_glacier_table

    common = {"glacier_id": "G1", "fold": 0, "area_inventory_km2": 2.0, "masked_frac": 0.0, "recall": 0.9,
              "debris_recall": float("nan")}  # as glacier_stats gives it without debris truth
    long = pd.DataFrame([
        {**common, "role": "inventory", "year": 2015, "pred_area_km2": 1.8, "pred_area_lo_km2": 1.7,
         "pred_area_hi_km2": 1.95},
        {**common, "role": "recent", "year": 2020, "pred_area_km2": 1.5, "pred_area_lo_km2": 1.3,
         "pred_area_hi_km2": 1.6},
        {**common, "role": "recent", "year": 2023, "pred_area_km2": 1.4, "pred_area_lo_km2": 1.2,
         "pred_area_hi_km2": 1.5},  # the latest recent epoch is the one compared
    ])
    w = per_glacier_table(long).set_index("glacier_id").loc["G1"]
    assert (w.area_lo_inv_km2, w.area_hi_inv_km2, w.area_lo_recent_km2, w.area_hi_recent_km2) == (1.7, 1.95, 1.2, 1.5)
    assert not any(c.startswith("pred_std") for c in w.index)
    t = area_change_table(per_glacier_table(long), NO_EXTREME)  # the analysis reads it as it is
    assert t.loc[0, "sigma_inv_km2"] == pytest.approx(0.125) and t.loc[0, "sigma_recent_km2"] == pytest.approx(0.15)


def test_probability_raster_has_three_described_bands(tmp_path):
    import rasterio
    from rasterio import Affine
    from rasterio.crs import CRS

    from glaciermap.data.grid import Grid
    from glaciermap.inference.run import read_probability, write_probability

    grid = Grid(CRS.from_epsg(32632), Affine(10, 0, 600000, 0, -10, 5100000), 3, 2)
    prob = np.array([[0.0, 0.5, 0.9], [1.0, 0.1, 0.5]], np.float32)
    std = np.full_like(prob, 0.05)
    write_probability(tmp_path / "G1.tif", prob, std, grid, key="k")
    with rasterio.open(tmp_path / "G1.tif") as src:
        assert src.count == 3
        assert src.descriptions == ("probability", "ensemble_std", "uncertainty")
        # sqrt(p (1 - p)): 0 where sure, 0.5 at p = 0.5, sqrt(.9 * .1) = 0.3
        np.testing.assert_allclose(src.read(3), [[0.0, 0.5, 0.3], [0.0, 0.3, 0.5]], atol=1e-6)
    got = read_probability(tmp_path / "G1.tif", grid, key="k")
    np.testing.assert_array_equal(got[0], prob)
    np.testing.assert_array_equal(got[1], std)
