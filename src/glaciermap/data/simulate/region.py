"""Orchestration: simulate a whole raw region and write it (docs/data-format.md, section 1)."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import warnings
import zlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from rasterio.crs import CRS
from rasterio.enums import Resampling
from scipy import ndimage
from tqdm.auto import tqdm

from glaciermap.config.simulate import SimulateConfig, memory_problem
from glaciermap.errors import ConfigError, InputDataError
from glaciermap.io import write_json

from . import clouds as cl
from . import glaciers as gl
from . import dhdt as dh
from . import noise, optical, sar, surface, terrain
from .evolution import evolve, make_epochs, target_rates
from .writer import atomic_dir, n_strips, open_geotiff, strips, write_array, write_csv, write_gpkg, write_yaml

DEM_MARGIN_PX = 2


def _rng(cfg: SimulateConfig, name: str, *extra: int) -> np.random.Generator:
    """An independent random stream per component, so changing one does not shift the others."""
    return np.random.default_rng([cfg.seed & 0xFFFFFFFF, zlib.crc32(name.encode()), *extra])


def simulate_region(cfg: SimulateConfig, out_dir: Path, *, progress: bool = True) -> Path:
    """Simulate the region described by `cfg` and write it to `out_dir` (replaced atomically).

    Returns `out_dir`. Raises InputDataError for unusable real inputs (DEM / outlines).
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        _build(cfg, tmp, progress)
    return out_dir


# ----------------------------------------------------------------------------------- region
def _scene_grid(cfg: SimulateConfig, crs: CRS) -> terrain.SimGrid:
    res = cfg.resolution_m
    if cfg.dem_path is None:
        return terrain.region_grid_from_center(crs, cfg.center_lon, cfg.center_lat,
                                               cfg.width_km * 1000, cfg.height_km * 1000, res)
    inner, _ = terrain.read_dem_footprint(Path(cfg.dem_path), crs)
    shrink = 2 * max(cfg.dem_resolution_m, res)
    inner = (inner[0] + shrink, inner[1] + shrink, inner[2] - shrink, inner[3] - shrink)
    if cfg.explicit_box:
        want = terrain.region_grid_from_center(crs, cfg.center_lon, cfg.center_lat,
                                               cfg.width_km * 1000, cfg.height_km * 1000, res)
        l, b, r, t = want.bounds
        inner = (max(l, inner[0]), max(b, inner[1]), min(r, inner[2]), min(t, inner[3]))
        if inner[2] <= inner[0] or inner[3] <= inner[1]:
            raise InputDataError(
                f"the requested region (centre {cfg.center_lon}, {cfg.center_lat}; "
                f"{cfg.width_km} x {cfg.height_km} km) lies outside the DEM", path=cfg.dem_path,
                hint="move center_lon/center_lat into the DEM or leave them unset to use the whole DEM")
    grid = terrain.grid_from_bounds(crs, *inner, res)
    problem = memory_problem(grid.width, grid.height, cfg.max_memory_gib)
    if problem:
        raise ConfigError(f"simulate: the DEM's extent is too large: {problem}", path=cfg.dem_path)
    if grid.width < 64 or grid.height < 64:
        raise InputDataError(f"the region covered by the DEM is too small ({grid.width} x {grid.height} px "
                             f"at {res} m; need 64 x 64)", path=cfg.dem_path)
    return grid


def _build(cfg: SimulateConfig, out: Path, progress: bool) -> None:
    crs = CRS.from_user_input(cfg.crs)
    res = cfg.resolution_m
    scene = _scene_grid(cfg, crs)
    coarsest = max(cfg.dem_resolution_m, cfg.sar_resolution_m, cfg.dhdt_resolution_m if cfg.dhdt else 0.0)
    pad = max(64, math.ceil(3 * coarsest / res))
    pgrid = scene.padded(pad)
    inner = (slice(pad, pad + scene.height), slice(pad, pad + scene.width))
    epochs = make_epochs(list(cfg.inventory_years), cfg.recent_year, _rng(cfg, "epochs"))
    sar_grid = scene.with_res(cfg.sar_resolution_m)
    n_acq = cfg.acquisitions_per_epoch
    total = 6 + len(epochs) * n_acq * (n_strips(scene) + (n_strips(sar_grid) if cfg.sar else 0))
    bar = tqdm(total=total, desc=f"simulate {cfg.name}", unit="step", disable=not progress)
    try:
        # -- terrain -------------------------------------------------------------------------
        if cfg.dem_path is not None:
            z = terrain.real_terrain(Path(cfg.dem_path), pgrid, pad, _rng(cfg, "terrain")).z
        else:
            z = terrain.procedural_terrain(pgrid, pad, _rng(cfg, "terrain")).z
        lake_p, z = surface.make_lakes(z, pgrid)
        bar.update()
        # -- glaciers ------------------------------------------------------------------------
        dropped: dict[str, str] = {}
        gen_info: dict = {}
        if cfg.outlines_path is not None:
            path = Path(cfg.outlines_path)
            gdf, _ = gl.read_outlines(path, crs, cfg.outlines_id_column)
            gset = gl.select_outlines(gdf, scene, path)
            ids, geoms, dropped = gset.ids, gset.geoms, gset.dropped
        else:
            labels_p, gen_info = gl.generate_glaciers(
                z, pgrid, pad, ela_m=cfg.ela_m, n_glaciers=cfg.n_glaciers,
                sun_azimuth_deg=cfg.sun_azimuth_deg, sun_elevation_deg=cfg.sun_elevation_deg,
                rng=_rng(cfg, "glaciers"))
            polys = gl.labels_to_polygons(labels_p[inner], scene) if labels_p.max() > 0 else []
            order = sorted(range(len(polys)), key=lambda i: (polys[i].centroid.x, -polys[i].centroid.y))
            geoms = [polys[i] for i in order]
            ids = [f"G{k + 1:04d}" for k in range(len(geoms))]
        if not geoms:
            raise InputDataError("the simulated region has no glacier", path=cfg.dem_path,
                                 hint="lower ela_m or choose a higher region")
        # ice surfaces are smooth: blend the DEM towards a smoothed one on glaciers
        base_p = gl.rasterize(geoms, pgrid) > 0
        w = ndimage.gaussian_filter(base_p.astype(np.float32), 2.0)
        z = (z * (1 - w) + ndimage.gaussian_filter(z, 3.0) * w).astype(np.float32)
        bar.update()
        # -- time: inventory epochs, rates, outlines per epoch -------------------------------
        n = len(geoms)
        inv_names = [e.name for e in epochs if e.inventory]
        inv_epoch = _rng(cfg, "inventory").choice(inv_names, n).tolist()
        ep = {e.name: e for e in epochs}
        base_km2 = np.array([g.area / 1e6 for g in geoms])
        t_inv = np.array([ep[k].year for k in inv_epoch])
        rates, vanish = target_rates(base_km2, epochs[0].year, t_inv, epochs[-1].year,
                                     cfg.regional_rate_pct_per_yr, _rng(cfg, "rates"))
        z_scene = z[inner]
        states = evolve(geoms, z_scene, scene, epochs, inv_epoch, rates, vanish)
        bar.update()
        # -- static fields --------------------------------------------------------------------
        slope_p, aspect_p = terrain.slope_aspect(z, res)
        cos_i = terrain.cos_incidence(slope_p, aspect_p, cfg.sun_azimuth_deg, cfg.sun_elevation_deg)
        shadow_p = terrain.cast_shadow(z, res, cfg.sun_azimuth_deg, cfg.sun_elevation_deg)
        slope, aspect = slope_p[inner], aspect_p[inner]
        shadow = shadow_p[inner]
        del cos_i  # recomputed below on the scene only (saves memory on big grids)
        cos_s = terrain.cos_incidence(slope, aspect, cfg.sun_azimuth_deg, cfg.sun_elevation_deg)
        srng = _rng(cfg, "surface")
        base_labels = gl.rasterize(geoms, scene)
        debris_ids = _pick_debris(base_km2, z_scene, base_labels, cfg, srng)
        static = surface.static_surface(z_scene, slope, scene, lake_p[inner], base_labels, debris_ids,
                                        cfg.ela_m, srng)
        trng = _rng(cfg, "texture")
        inputs = optical.OpticalInputs(
            direct=optical.direct_factor(cos_s, shadow, cfg.sun_elevation_deg),
            skyview=optical.sky_view(slope),
            albedo=noise.gaussian_field(trng, scene.shape, res, 150.0),
            grain=noise.fbm(trng, scene.shape, res, 80.0, 2 * res, 1.5),
            ice_dirt=np.clip((cfg.ela_m - 150.0 - z_scene) / 600.0, 0.0, 1.0).astype(np.float32),
        )
        dhdt_map = dhdt_grid = None
        if cfg.dhdt:
            dhdt_grid = scene.with_res(cfg.dhdt_resolution_m, DEM_MARGIN_PX)
            dhdt_map = _dhdt(cfg, z, pgrid, inner, base_labels > 0, static.debris_zone, slope_p, shadow_p,
                             dhdt_grid)
        del cos_s, slope_p, aspect_p
        sar_tex = noise.gaussian_field(trng, scene.shape, res, 60.0) if cfg.sar else None
        sar_geom = sar.sar_geometry(z, pgrid, sar_grid, pad) if cfg.sar else None
        bar.update()
        # -- static files ----------------------------------------------------------------------
        (out / "scenes").mkdir()
        (out / "truth").mkdir()
        dem_grid = scene.with_res(cfg.dem_resolution_m, DEM_MARGIN_PX)
        dem = sar.to_grid(z, pgrid, dem_grid, Resampling.average)
        write_array(out / "dem.tif", dem_grid, [dem], ["elevation"], "float32", np.nan)
        if cfg.dhdt:
            dh.write_dhdt(out / "dhdt.tif", dhdt_grid, dhdt_map, cfg.dhdt_years)
        _write_vectors(out, cfg, ids, geoms, states, epochs, inv_epoch, rates, vanish, crs,
                       gen_info, dropped, debris_ids)
        bar.update()
        # -- scenes ------------------------------------------------------------------------------
        snow_rng = _rng(cfg, "snowline")
        for k, e in enumerate(epochs):
            glacier = gl.rasterize([g for g in states[e.name] if g is not None], scene) > 0
            snowline = cfg.ela_m + float(snow_rng.uniform(-40.0, 160.0))
            cls = surface.epoch_classes(z_scene, slope, aspect, static, glacier, snowline)
            for j, name in enumerate(_acquisition_names(e, cfg)):
                alt = (j,) if j else ()  # the main scene's random streams do not depend on n_acq
                edir = out / "scenes" / name
                edir.mkdir()
                crng = _rng(cfg, "clouds", k, *alt)
                frac = float(np.clip(cfg.cloud_cover * crng.uniform(0.3, 1.7), 0.0, 0.9))
                cf = cl.make_clouds(scene.shape, res, frac, cfg.sun_azimuth_deg, cfg.sun_elevation_deg, crng)
                gains = (1.0 + 0.02 * crng.standard_normal(6)).astype(np.float32)
                surface_path = out / "truth" / f"surface_{e.name}.tif"
                with open_geotiff(edir / "optical.tif", scene, list(optical.BANDS), "float32", np.nan) as ds_o, \
                        open_geotiff(edir / "cloud.tif", scene, ["cloud"], "uint8", cl.NODATA) as ds_c, \
                        (open_geotiff(surface_path, scene, ["class", "cast_shadow"], "uint8", 255)
                         if j == 0 else contextlib.nullcontext()) as ds_s:
                    for i, (win, sl) in enumerate(strips(scene)):
                        nrng = _rng(cfg, "optical-noise", k, i, *alt)
                        block = optical.render_window(cls, inputs, sl, cf.opacity[sl], cf.shadow[sl],
                                                      cf.texture[sl], gains, cfg.noise, nrng)
                        ds_o.write(block, window=win)
                        ds_c.write(cf.mask(sl)[None], window=win)
                        if ds_s is not None:
                            ds_s.write(np.stack([cls[sl], shadow[sl].astype(np.uint8)]), window=win)
                        bar.update()
                if cfg.sar:
                    offset = float(crng.normal(0.0, 0.4))
                    fields = sar.expected_fields(cls, sar_tex, scene, sar_grid, offset)
                    with open_geotiff(edir / "sar.tif", sar_grid, list(sar.BANDS), "float32", np.nan) as ds:
                        for i, (win, sl) in enumerate(strips(sar_grid)):
                            ds.write(sar.render_window(fields, sar_geom, sl, _rng(cfg, "sar-noise", k, i, *alt)),
                                     window=win)
                            bar.update()
                    del fields
        _write_manifest(out, cfg, epochs)
        bar.update()
    finally:
        bar.close()


def _dhdt(cfg: SimulateConfig, z: np.ndarray, pgrid: terrain.SimGrid, inner, glacier: np.ndarray,
          debris: np.ndarray, slope: np.ndarray, shadow: np.ndarray, dhdt_grid: terrain.SimGrid) -> np.ndarray:
    """The dh/dt map (`dh.simulate_dhdt`) from the padded terrain and the scene's base glaciers."""
    on_ice = np.zeros(z.shape, bool)
    on_ice[inner] = glacier
    on_debris = np.zeros(z.shape, np.float32)
    on_debris[inner] = debris
    signal = dh.thinning(z, on_ice, on_debris, cfg.ela_m)
    return dh.simulate_dhdt(signal, slope, shadow, on_ice & (z >= cfg.ela_m), pgrid, dhdt_grid,
                            cfg.dhdt_noise, _rng(cfg, "dhdt"))


def _pick_debris(base_km2: np.ndarray, z: np.ndarray, labels: np.ndarray, cfg: SimulateConfig,
                 rng: np.random.Generator) -> list[int]:
    """1-based glacier numbers with debris-covered tongues: valley glaciers (>= 0.3 km2,
    reaching >= 150 m below the ELA), `debris_fraction` of all glaciers at most."""
    n_want = int(round(cfg.debris_fraction * len(base_km2)))
    if n_want == 0:
        return []
    zmin = ndimage.minimum(z, labels, index=np.arange(1, len(base_km2) + 1))
    cand = [i + 1 for i in range(len(base_km2)) if base_km2[i] >= 0.3 and zmin[i] < cfg.ela_m - 150.0]
    if not cand:
        return []
    return sorted(rng.choice(cand, min(n_want, len(cand)), replace=False).tolist())


def _write_vectors(out: Path, cfg: SimulateConfig, ids, geoms, states, epochs, inv_epoch, rates,
                   vanish, crs, gen_info, dropped, debris_ids) -> None:
    ep = {e.name: e for e in epochs}
    recent = epochs[-1]
    n = len(ids)
    # inventory outlines (like RGI: EPSG:4326, one row per glacier)
    inv_geoms = [states[inv_epoch[i]][i] for i in range(n)]
    inv = gpd.GeoDataFrame({
        "glacier_id": ids,
        "date": [ep[inv_epoch[i]].date.isoformat() for i in range(n)],
        "area_km2": [g.area / 1e6 for g in inv_geoms],
    }, geometry=inv_geoms, crs=crs)
    write_gpkg(inv.to_crs("EPSG:4326"), out / "outlines.gpkg", "outlines")
    # truth: outlines and areas per epoch
    rows = []
    for e in epochs:
        keep = [i for i in range(n) if states[e.name][i] is not None]
        gdf = gpd.GeoDataFrame({
            "glacier_id": [ids[i] for i in keep],
            "epoch": e.name,
            "year": round(e.year, 6),
            "area_km2": [states[e.name][i].area / 1e6 for i in keep],
        }, geometry=[states[e.name][i] for i in keep], crs=crs)
        write_gpkg(gdf, out / "truth" / f"outlines_{e.name}.gpkg", f"outlines_{e.name}")
        for i in range(n):
            g = states[e.name][i]
            rows.append({"glacier_id": ids[i], "epoch": e.name, "year": round(e.year, 6),
                         "area_km2": 0.0 if g is None else g.area / 1e6})
    areas = pd.DataFrame(rows)
    write_csv(areas, out / "truth" / "areas.csv")
    # rates: inventory -> recent
    a_rec = np.array([0.0 if states[recent.name][i] is None else states[recent.name][i].area / 1e6
                      for i in range(n)])
    a_inv = np.array([g.area / 1e6 for g in inv_geoms])
    t_inv = np.array([ep[inv_epoch[i]].year for i in range(n)])
    dt_y = recent.year - t_inv
    rate_pct = 100.0 * (a_rec - a_inv) / a_inv / dt_y
    rates_df = pd.DataFrame({
        "glacier_id": ids, "inventory_epoch": inv_epoch, "inventory_year": np.round(t_inv, 6),
        "recent_epoch": recent.name, "recent_year": round(recent.year, 6),
        "area_inventory_km2": a_inv, "area_recent_km2": a_rec, "dt_years": dt_y,
        "rate_km2_per_yr": (a_rec - a_inv) / dt_y, "rate_pct_per_yr": rate_pct,
        "target_rate_pct_per_yr": np.round(rates, 6),
        "debris_covered": [(i + 1) in set(debris_ids) for i in range(n)],
        "vanished": a_rec == 0.0,
    })
    write_csv(rates_df, out / "truth" / "rates.csv")
    write_csv(pd.DataFrame({"glacier_id": list(dropped), "reason": list(dropped.values())},
                           columns=["glacier_id", "reason"]), out / "truth" / "skipped.csv")
    if dropped:
        warnings.warn(f"{cfg.outlines_path}: {len(dropped)} outline(s) left out, not entirely inside the "
                      f"simulated region (listed with the reason in truth/skipped.csv): "
                      f"{list(dropped)[:10]}{' ...' if len(dropped) > 10 else ''}", stacklevel=2)
    regional = 100.0 * float((a_rec - a_inv).sum() / (a_inv * dt_y).sum())
    small = a_inv < 1.0
    write_json(out / "truth" / "regional.json", {
        "name": cfg.name,
        "definition": "rate_pct_per_yr = 100 * sum(area_recent - area_inventory) / "
                      "sum(area_inventory * (year_recent - year_inventory)), areas planar in the scene CRS",
        "configured_rate_pct_per_yr": cfg.regional_rate_pct_per_yr,
        "rate_pct_per_yr": regional,
        "mean_glacier_rate_pct_per_yr": float(rate_pct.mean()),
        "mean_rate_small_lt_1km2_pct_per_yr": float(rate_pct[small].mean()) if small.any() else None,
        "mean_rate_large_ge_1km2_pct_per_yr": float(rate_pct[~small].mean()) if (~small).any() else None,
        "n_glaciers": n,
        "n_vanished": int((a_rec == 0).sum()),
        "n_small_lt_0.1km2": int((a_inv < 0.1).sum()),
        "n_debris_covered": len(debris_ids),
        "area_inventory_km2": float(a_inv.sum()),
        "area_recent_km2": float(a_rec.sum()),
        "inventory_epochs": [e.name for e in epochs if e.inventory],
        "recent_epoch": recent.name,
        "crs": crs.to_string(),
        "outlines_source": str(cfg.outlines_path) if cfg.outlines_path else "generated",
        "dem_source": str(cfg.dem_path) if cfg.dem_path else "procedural",
        "outlines_left_out": list(dropped),
        "generator": gen_info,
        "seed": cfg.seed,
    })


def _acquisition_names(epoch, cfg: SimulateConfig) -> list[str]:
    """Scene folders of an epoch: the epoch's name, then `<epoch>-alt1`, `<epoch>-alt2`, ..."""
    return [epoch.name] + [f"{epoch.name}-alt{j}" for j in range(1, cfg.acquisitions_per_epoch)]


def _write_manifest(out: Path, cfg: SimulateConfig, epochs) -> None:
    def entry(e) -> dict:
        alt = {name: e.date + dt.timedelta(days=j * cfg.revisit_days)
               for j, name in enumerate(_acquisition_names(e, cfg)) if j > 0}
        return {"date": e.date, **({"alternates": alt} if alt else {})}

    write_yaml({
        "name": cfg.name,
        "id_column": "glacier_id",
        "date_column": "date",
        "inventory_epochs": [e.name for e in epochs if e.inventory],
        "epochs": {e.name: entry(e) for e in epochs},
        # truth for the debris metrics (ingest puts it in the cubes as mask_debris; never a model input)
        "debris": {"path": "truth/surface_{epoch}.tif", "band": "class", "values": [surface.DEBRIS]},
        **({"dhdt": "dhdt.tif", "dhdt_period": list(cfg.dhdt_years)} if cfg.dhdt else {}),
    }, out / "region.yaml")


__all__ = ["simulate_region"]
