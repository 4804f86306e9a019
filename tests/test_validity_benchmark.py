"""The validity benchmark's pure pieces (benchmarks/validity.py): coverage, pooled targets, its inputs.

The benchmark itself runs the whole pipeline per region (minutes each) and is run on demand, not here.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from glaciermap.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def validity():
    spec = importlib.util.spec_from_file_location("validity_benchmark", ROOT / "benchmarks" / "validity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


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
    assert validity.glacier_coverage([g(-1.0, None, -1.2), g(None, 0.1, -1.0)]) == {
        "n": 0, "cover_1sigma": None, "cover_2sigma": None}


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
    assert [x.split()[1] for x in labels[3:-4]] == ["fold0", "fold1", "fold2"]
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


def test_a_region_whose_input_is_absent_is_skipped_with_the_reason(validity, tmp_path):
    absent = tmp_path / "hef_srtm.tif"
    region = validity.Region("real-terrain", 606, "r", needs=(absent,))
    row = validity.run_region(region, settings(validity), tmp_path / "work")
    assert row["skipped"] == f"input missing: {absent}" and "est_rate_pct_per_yr" not in row
    assert not (tmp_path / "work").exists()
    assert validity.pooled_statistics([row])["n_regions"] == 0


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
