"""Glaciers: generated from the terrain (mass balance + flux routing) or read from real outlines.

Generated glaciers come from a simple distributed model on a ~40 m routing grid:
  * a local equilibrium-line altitude (ELA) lowered on north-facing and often-shaded slopes,
  * a linear mass-balance gradient b(z) (capped accumulation above the ELA),
  * ice flux routed downhill along D8 flow paths in descending order; below the ELA the flow line
    ablates over a width that grows with the incoming flux (W ~ sqrt(Q)) until the flux is spent,
  * tongues widened laterally to that width where the valley is lower than the ice surface,
  * glaciers separated along drainage divides (all ice draining to the same terminus is one
    glacier), steep rock walls (> 45 degrees) left ice-free,
  * refined to the fine grid and vectorised as a non-overlapping polygon coverage.
A few tiny glacierets (< 0.1 km2) are added in sheltered north-facing niches when the terrain
does not make enough of them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from rasterio import features
from rasterio.crs import CRS
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon, box, shape

from glaciermap.errors import InputDataError

from . import noise
from .terrain import (SimGrid, block_mean, cast_shadow, d8_receivers, fill_depressions,
                      routing_factor, slope_aspect)

MIN_GLACIER_KM2 = 0.01  # RGI's lower size limit
SMALL_KM2 = 0.1


@dataclass
class GlacierSet:
    """Glacier base outlines (largest extent, at the first epoch) in the scene CRS."""

    ids: list[str]
    geoms: list[Polygon | MultiPolygon]
    source: str  # "generated" or the outlines file
    dropped: dict[str, str]  # real outlines left out: {glacier id: why} (not entirely inside the region)


# ---------------------------------------------------------------------------- generation
def _flux_route(order: list[int], rec: list[int], bal: list[float], steep: list[bool],
                cell: float, kw: float, wmax: float) -> tuple[list[float], list[float], bytearray]:
    """Route ice flux (m3 w.e./yr) downhill; returns outgoing flux, flow width (m) and ice flag."""
    n = len(rec)
    qin = [0.0] * n
    qout = [0.0] * n
    width = [0.0] * n
    ice = bytearray(n)
    area = cell * cell
    for i in order:
        q = qin[i]
        b = bal[i]
        if b > 0.0:
            q += b * area
            if not steep[i]:
                ice[i] = 1
                width[i] = cell
        elif q > 0.0:
            w = kw * math.sqrt(q)
            w = cell if w < cell else (wmax if w > wmax else w)
            if not steep[i]:
                ice[i] = 1
                width[i] = w
                q += b * cell * w
            else:  # ice falls over a cliff, losing a little
                q += b * cell * cell
            if q < 0.0:
                q = 0.0
        qout[i] = q
        r = rec[i]
        if q > 0.0 and r >= 0:
            qin[r] += q
    return qout, width, ice


def _labels_by_terminus(order_up: list[int], rec: list[int], conn: bytearray) -> list[int]:
    """Label connected flow trees: cells draining to the same last connected cell share a label."""
    lab = [0] * len(rec)
    nxt = 1
    for i in order_up:
        if not conn[i]:
            continue
        r = rec[i]
        if r >= 0 and conn[r]:
            lab[i] = lab[r]
        else:
            lab[i] = nxt
            nxt += 1
    return lab


def generate_glaciers(z: np.ndarray, grid: SimGrid, pad: int, *, ela_m: float, n_glaciers: int,
                      sun_azimuth_deg: float, sun_elevation_deg: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Fine label raster (0 = no glacier, k = glacier k) on the padded grid, and diagnostics.

    Only glaciers entirely inside the scene (the padded grid minus `pad`) are kept.
    """
    fg = routing_factor(grid)
    cell = fg * grid.res
    zg = block_mean(z, fg).astype(np.float64)
    hg, wg = zg.shape
    # ice flows along its (smooth) surface, not along every bump of the bed: route on a smoothed,
    # depression-filled surface with randomised D8 (no straight lines across filled flats)
    zs = ndimage.gaussian_filter(zg, 1.0)
    zr = fill_depressions(ndimage.gaussian_filter(zg, 2.0), eps=0.05, rng=rng)
    rec = d8_receivers(zr, cell, rng, jitter=0.5)
    slope, aspect = slope_aspect(zs, cell)
    shade = cast_shadow(zg, cell, sun_azimuth_deg, max(sun_elevation_deg - 20.0, 8.0))
    # climate: local ELA (north faces / shade lower), linear balance gradient, capped accumulation
    facing = np.cos(aspect) * np.clip(np.sin(slope) / 0.5, 0.0, 1.0)
    ela_loc = (ela_m - 130.0 * facing - 60.0 * shade
               + 50.0 * noise.gaussian_field(rng, (hg, wg), cell, 2000.0))
    bal = np.minimum(0.0075 * (zg - ela_loc), 1.5)
    steep = slope > math.radians(45.0)
    order = np.argsort(-zr.ravel(), kind="stable").tolist()
    recl = rec.tolist()
    qout, width, ice = _flux_route(order, recl, bal.ravel().tolist(), steep.ravel().tolist(),
                                   cell, kw=0.34, wmax=1500.0)
    qout_a = np.asarray(qout).reshape(hg, wg)
    width_a = np.asarray(width).reshape(hg, wg)
    ice_a = np.frombuffer(bytes(ice), np.uint8).reshape(hg, wg).astype(bool)
    # widen tongues where the valley lies below the ice surface along the flow line
    flow = ice_a & (bal <= 0) & (width_a > cell)
    radius = np.where(flow, width_a / 2.0, 0.0)
    surf = np.where(flow, zs + 0.25 * width_a, -np.inf)
    tongue = np.zeros_like(ice_a)
    fp_sq = np.ones((3, 3), bool)
    fp_cr = ndimage.generate_binary_structure(2, 1)
    for k in range(int(750.0 / cell) + 1):
        fp = fp_sq if k % 2 else fp_cr
        r2 = ndimage.grey_dilation(radius, footprint=fp) - cell
        s2 = ndimage.grey_dilation(surf, footprint=fp) - 0.05 * cell
        new = (r2 > 0) & (zg <= s2) & ~steep & ~ice_a & ~tongue
        if not new.any():
            break
        tongue |= new
        radius = np.where(new, r2, radius)
        surf = np.where(new, s2, surf)
    conn = bytearray((ice_a | (qout_a > 0)).ravel().astype(np.uint8).tobytes())
    lab = np.asarray(_labels_by_terminus(order[::-1], recl, conn)).reshape(hg, wg)
    lab = np.where(ice_a, lab, 0)
    glac = ndimage.binary_closing(ice_a | tongue, np.ones((3, 3), bool)) & ~steep | ice_a | tongue
    # every glacier cell takes the label of the nearest labelled ice cell
    idx = ndimage.distance_transform_edt(lab == 0, return_distances=False, return_indices=True)
    lab_near = lab[tuple(idx)]
    # refine to the fine grid: smooth membership, nearest label
    memb = ndimage.gaussian_filter(glac.astype(np.float32), 0.8)
    memb_f = ndimage.zoom(memb, fg, order=1, mode="nearest", grid_mode=True)[: grid.height, : grid.width]
    memb_f = _pad_to(memb_f, grid.shape)
    lab_f = _smooth_labels(np.where(ndimage.binary_dilation(glac, iterations=2), lab_near, 0), fg, grid.shape)
    # a little fine-scale irregularity on the margins
    wobble = noise.gaussian_field(rng, grid.shape, grid.res, 60.0)
    fine = (memb_f + 0.08 * wobble) > 0.5
    # no slivers or pinholes narrower than ~60 m (a 40 m routing grid leaves some)
    disk = _disk(max(1, int(round(30.0 / grid.res))))
    fine = ndimage.binary_opening(fine, disk)
    fine = ndimage.binary_closing(fine, _disk(max(1, int(round(20.0 / grid.res)))))
    labels = np.where(fine, lab_f, 0).astype(np.int32)
    labels = _clean_labels(labels, grid, pad, min_px=int(MIN_GLACIER_KM2 * 1e6 / grid.pixel_area))
    labels, info = _select_and_fill(labels, z, grid, pad, n_glaciers, ela_m, rng)
    info["model_cell_m"] = cell
    return labels, info


def _smooth_labels(lab: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """Upsample a label grid by `f` with smooth borders: each fine pixel takes the label whose
    blurred indicator (bilinear on the fine grid) is largest there."""
    out = np.zeros(shape, np.int32)
    if f == 1:
        out[: lab.shape[0], : lab.shape[1]] = lab[: shape[0], : shape[1]]
        return out
    best = np.zeros(shape, np.float32)
    hg, wg = lab.shape
    for k, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None:
            continue
        r0, r1 = max(sl[0].start - 3, 0), min(sl[0].stop + 3, hg)
        c0, c1 = max(sl[1].start - 3, 0), min(sl[1].stop + 3, wg)
        ind = ndimage.gaussian_filter((lab[r0:r1, c0:c1] == k).astype(np.float32), 0.7)
        up = ndimage.zoom(ind, f, order=1, mode="nearest", grid_mode=True)
        fr0, fc0 = r0 * f, c0 * f
        fr1, fc1 = min(fr0 + up.shape[0], shape[0]), min(fc0 + up.shape[1], shape[1])
        up = up[: fr1 - fr0, : fc1 - fc0]
        win = best[fr0:fr1, fc0:fc1]
        better = up > win
        win[better] = up[better]
        out[fr0:fr1, fc0:fc1][better] = k
    return out


def _disk(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx * xx + yy * yy) <= r * r + 0.5


def _pad_to(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if a.shape == shape:
        return a
    return np.pad(a, ((0, shape[0] - a.shape[0]), (0, shape[1] - a.shape[1])), mode="edge")


def _clean_labels(labels: np.ndarray, grid: SimGrid, pad: int, min_px: int) -> np.ndarray:
    """Clip to the scene (glaciers crossing its edge are cut there, like an inventory clipped to
    its region), give stray pieces of a label to the glacier around them, keep one 4-connected
    piece per label, fill small holes, drop glaciers under `min_px` pixels; relabel 1..n."""
    h, w = labels.shape
    lab = np.zeros_like(labels)
    lab[pad:h - pad, pad:w - pad] = labels[pad:h - pad, pad:w - pad]
    for _ in range(3):
        stray = np.zeros(lab.shape, bool)
        for k, sl in enumerate(ndimage.find_objects(lab), start=1):
            if sl is None:
                continue
            comp, n = ndimage.label(lab[sl] == k)
            if n > 1:
                sizes = np.bincount(comp.ravel())[1:]
                stray[sl] |= (comp > 0) & (comp != int(np.argmax(sizes)) + 1)
        if not stray.any():
            break
        # a stray piece joins the glacier(s) it touches; isolated ones disappear
        lab[stray] = 0
        lab[stray] = _spread(lab, stray)
    out = np.zeros_like(lab)
    nxt = 1
    for k, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None:
            continue
        sl = (slice(max(sl[0].start - 1, 0), min(sl[0].stop + 1, h)),
              slice(max(sl[1].start - 1, 0), min(sl[1].stop + 1, w)))
        m = lab[sl] == k
        comp, n = ndimage.label(m)
        if n > 1:
            m = comp == int(np.argmax(np.bincount(comp.ravel())[1:])) + 1
        holes, nh = ndimage.label(ndimage.binary_fill_holes(m) & ~m)
        if nh:
            hs = np.bincount(holes.ravel())[1:]
            other = ndimage.maximum(lab[sl] > 0, holes, index=np.arange(1, nh + 1))
            fill_ids = [i + 1 for i in range(nh) if hs[i] < 2 * min_px and not other[i]]
            if fill_ids:
                m |= np.isin(holes, fill_ids)
        if m.sum() < min_px:
            continue
        out[sl][m] = nxt
        nxt += 1
    # small gaps enclosed by several glaciers go to their neighbours
    union = out > 0
    holes, nh = ndimage.label(ndimage.binary_fill_holes(union) & ~union)
    if nh:
        hs = np.bincount(holes.ravel())[1:]
        small = np.isin(holes, np.flatnonzero(hs < 2 * min_px) + 1)
        if small.any():
            out[small] = _spread(out, small)
    return out


def _spread(lab: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Labels for `region` pixels grown step by step from the labelled pixels next to them."""
    cur = lab.copy()
    todo = region.copy()
    for _ in range(10000):
        if not todo.any():
            break
        grown = ndimage.grey_dilation(cur, size=(3, 3))
        step = todo & (grown > 0) & (cur == 0)
        if not step.any():
            break
        cur[step] = grown[step]
        todo &= ~step
    return cur[region]


def _select_and_fill(labels: np.ndarray, z: np.ndarray, grid: SimGrid, pad: int, n_target: int,
                     ela_m: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Keep about `n_target` glaciers (largest first, plus a few small ones); add glacierets."""
    px_km2 = grid.pixel_area / 1e6
    n = int(labels.max())
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:] * px_km2
    n_small_target = max(2, int(round(0.15 * n_target)))
    small = [i + 1 for i in np.argsort(sizes) if sizes[i] < SMALL_KM2]
    large = [i + 1 for i in np.argsort(-sizes) if sizes[i] >= SMALL_KM2]
    n_large = min(len(large), max(n_target - n_small_target, 1))
    keep_large = large[:n_large]
    contact = _contacts(labels)
    touching = {a for a, _ in contact}
    # isolated, compact small glaciers only (no slivers): the largest inscribed circle must have
    # at least 0.55 x the radius of a circle of the same area
    thick = ndimage.maximum(ndimage.distance_transform_edt(labels > 0), labels, index=np.arange(1, n + 1))
    compact = thick * grid.res / np.sqrt(np.maximum(sizes, 1e-9) * 1e6 / math.pi)
    small = [k for k in small if k not in touching and compact[k - 1] >= 0.55]
    n_small_keep = min(len(small), max(n_target - n_large, 0))
    keep_small = sorted(rng.choice(small, n_small_keep, replace=False).tolist()) if n_small_keep else []
    keep = keep_large + keep_small
    # candidates left out that touch a kept glacier join it (the one they share most border
    # with), so that ice fields are not cut; isolated ones are dropped (become rock)
    owner = {k: k for k in keep}
    changed = True
    while changed:
        changed = False
        for k in range(1, n + 1):
            if k in owner:
                continue
            best = max(((cnt, owner[o]) for (a, o), cnt in contact.items() if a == k and o in owner),
                       default=None)
            if best is not None:
                owner[k] = best[1]
                changed = True
    lut = np.zeros(n + 1, np.int32)
    rank = {old: new for new, old in enumerate(keep, start=1)}
    for k, o in owner.items():
        lut[k] = rank[o]
    out = lut[labels]
    n_add = n_target - len(keep)
    added = _add_glacierets(out, z, grid, pad, n_add, ela_m, rng) if n_add > 0 else 0
    info = {"candidates": n, "kept": len(keep), "glacierets_added": added}
    return out, info


def _contacts(labels: np.ndarray) -> dict[tuple[int, int], int]:
    """{(a, b): number of 4-neighbour pixel pairs} between different non-zero labels (both ways)."""
    out: dict[tuple[int, int], int] = {}
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        m = (a > 0) & (b > 0) & (a != b)
        if not m.any():
            continue
        pairs, cnt = np.unique(np.stack([a[m], b[m]]), axis=1, return_counts=True)
        for (x, y), c in zip(pairs.T.tolist(), cnt.tolist()):
            out[(x, y)] = out.get((x, y), 0) + c
            out[(y, x)] = out.get((y, x), 0) + c
    return out


def _add_glacierets(labels: np.ndarray, z: np.ndarray, grid: SimGrid, pad: int, n_add: int,
                    ela_m: float, rng: np.random.Generator) -> int:
    """Add up to `n_add` small glaciers (0.015-0.09 km2) in shaded niches near the ELA (in place)."""
    res = grid.res
    slope, aspect = slope_aspect(ndimage.gaussian_filter(z, 2.0), res)
    h, w = z.shape
    margin = pad + int(200.0 / res)
    dist = ndimage.distance_transform_edt(labels == 0) * res
    ok = ((z > ela_m - 350.0) & (z < ela_m + 50.0) & (np.cos(aspect) > 0.5)
          & (slope > math.radians(12.0)) & (slope < math.radians(38.0)) & (dist > 250.0))
    ok[:margin, :] = ok[-margin:, :] = False
    ok[:, :margin] = ok[:, -margin:] = False
    cand = np.flatnonzero(ok.ravel())
    if cand.size == 0:
        return 0
    cand = rng.permutation(cand)
    added, nxt = 0, int(labels.max()) + 1
    taken = np.zeros_like(ok)
    for c in cand.tolist():
        if added >= n_add:
            break
        r, cc = divmod(c, w)
        if taken[r, cc]:
            continue
        target_km2 = float(rng.uniform(0.015, 0.09))
        rad = math.sqrt(target_km2 * 1e6 / math.pi) / res
        half = int(rad * 2.5) + 3
        r0, r1, c0, c1 = r - half, r + half + 1, cc - half, cc + half + 1
        if r0 < pad or c0 < pad or r1 > h - pad or c1 > w - pad:
            continue
        yy, xx = np.mgrid[r0:r1, c0:c1]
        # an ellipse elongated along the fall line, with a wobbly edge
        a = aspect[r, cc]
        u = (xx - cc) * math.sin(a) - (yy - r) * math.cos(a)   # downslope (x east, -row north)
        v = (xx - cc) * math.cos(a) + (yy - r) * math.sin(a)
        ell = (u / (1.4 * rad)) ** 2 + (v / (0.75 * rad)) ** 2
        wob = ndimage.gaussian_filter(rng.standard_normal(ell.shape), 2.0)
        wob /= wob.std() + 1e-9
        m = (ell + 0.15 * wob < 1.0) & (labels[r0:r1, c0:c1] == 0) & (slope[r0:r1, c0:c1] < math.radians(45))
        comp, nc = ndimage.label(m)
        if nc == 0:
            continue
        centre = comp[half, half] or int(np.argmax(np.bincount(comp.ravel())[1:])) + 1
        m = comp == centre
        area = m.sum() * grid.pixel_area / 1e6
        if not (MIN_GLACIER_KM2 * 1.2 <= area < SMALL_KM2):
            continue
        near = ndimage.binary_dilation(m, iterations=int(100.0 / res) + 1)
        if (labels[r0:r1, c0:c1][near] > 0).any():
            continue
        labels[r0:r1, c0:c1][m] = nxt
        taken[max(r0 - half, 0):r1 + half, max(c0 - half, 0):c1 + half] = True
        nxt += 1
        added += 1
    return added


def labels_to_polygons(labels: np.ndarray, grid: SimGrid, simplify_px: float = 1.0) -> list[Polygon]:
    """Vectorise a label raster (labels 1..n, one piece each) into a simplified polygon coverage."""
    n = int(labels.max())
    parts: list[list] = [[] for _ in range(n)]
    for geom, val in features.shapes(labels, mask=labels > 0, transform=grid.transform, connectivity=4):
        parts[int(val) - 1].append(shape(geom))
    geoms = [shapely.union_all(p) if len(p) > 1 else p[0] for p in parts]
    simp = shapely.coverage_simplify(np.asarray(geoms, dtype=object), simplify_px * grid.res)
    out = []
    for g0, g in zip(geoms, simp):
        g = shapely.make_valid(g) if not g.is_valid else g
        g = _polygonal(g)
        out.append(g if (g is not None and not g.is_empty) else g0)
    return out


def _polygonal(g):
    if isinstance(g, (Polygon, MultiPolygon)):
        return g
    polys = [p for p in getattr(g, "geoms", []) if isinstance(p, (Polygon, MultiPolygon))]
    if not polys:
        return None
    flat = [q for p in polys for q in getattr(p, "geoms", [p])]
    return flat[0] if len(flat) == 1 else MultiPolygon(flat)


# ---------------------------------------------------------------------------- real outlines
ID_CANDIDATES = ("glacier_id", "rgi_id", "RGIId", "RGIID", "glims_id", "GLIMSId", "id")


def read_outlines(path: Path, crs: CRS, id_column: str | None) -> tuple[gpd.GeoDataFrame, str]:
    """Real outlines reprojected to `crs` with clean polygonal geometry; returns (gdf, id column)."""
    try:
        gdf = gpd.read_file(path)
    except Exception as err:  # pyogrio raises several types
        raise InputDataError(f"cannot read outlines: {err}", path=path) from None
    if gdf.crs is None:
        raise InputDataError("outlines have no CRS", path=path, hint="add a .prj / set the CRS")
    if len(gdf) == 0:
        raise InputDataError("no outlines in file", path=path)
    col = id_column or next((c for c in ID_CANDIDATES if c in gdf.columns), None)
    if col is None or col not in gdf.columns:
        raise InputDataError(f"no glacier id column (looked for {id_column or list(ID_CANDIDATES)}; "
                             f"columns: {list(gdf.columns)})", path=path,
                             hint="set simulate.outlines_id_column")
    ids = gdf[col].astype(str)
    if ids.duplicated().any():
        dup = ids[ids.duplicated()].unique()[:5].tolist()
        raise InputDataError(
            f"duplicate glacier ids in column {col!r}: {dup} ({int(ids.duplicated().sum())} polygon(s) repeat an id)",
            path=path, hint="set simulate.outlines_id_column to a column unique per polygon; for divides of one "
                            f"glacier (several polygons per {col}), dissolve them into one outline per glacier "
                            f"(geopandas: gdf.dissolve(by={col!r})) or number them in a new column")
    gdf = gpd.GeoDataFrame({"glacier_id": ids.values}, geometry=gdf.geometry.values, crs=gdf.crs)
    gdf = gdf[~(gdf.geometry.isna() | gdf.geometry.is_empty)]
    bad = ~gdf.geometry.is_valid
    if bad.any():
        warnings.warn(f"{path}: repaired {int(bad.sum())} invalid outline(s) with make_valid", stacklevel=2)
        gdf.loc[bad, "geometry"] = gdf.geometry[bad].apply(lambda g: _polygonal(shapely.make_valid(g)))
        gdf = gdf[~(gdf.geometry.isna() | gdf.geometry.is_empty)]
    return gdf.to_crs(crs), col


def select_outlines(gdf: gpd.GeoDataFrame, grid: SimGrid, path: Path) -> GlacierSet:
    """Outlines lying entirely inside the scene (one pixel in from the edge)."""
    left, bottom, right, top = grid.bounds
    inner = box(left + grid.res, bottom + grid.res, right - grid.res, top - grid.res)
    region = box(left, bottom, right, top)
    hits = gdf.geometry.intersects(region)
    if not hits.any():
        bounds = tuple(round(b) for b in grid.bounds)
        raise InputDataError(f"no outline overlaps the simulated region {bounds} "
                             f"({grid.crs.to_string()})", path=path,
                             hint="outlines and DEM must cover the same place")
    inside = gdf.geometry.within(inner)
    if not inside.any():
        raise InputDataError("no outline lies entirely inside the simulated region", path=path,
                             hint="enlarge the region (width_km/height_km) or omit it to use the whole DEM")
    keep = gdf[inside].sort_values("glacier_id")
    why = {gid: "crosses the edge of the simulated region" if hit else "outside the simulated region"
           for gid, hit in zip(gdf.loc[~inside, "glacier_id"], hits[~inside])}
    return GlacierSet(keep["glacier_id"].tolist(), list(keep.geometry.values), str(path), dict(sorted(why.items())))


def rasterize(geoms: list, grid: SimGrid, values: list[int] | None = None) -> np.ndarray:
    """Label raster (int32) of polygons on `grid` (pixel centres inside); later ones win."""
    if not geoms:
        return np.zeros(grid.shape, np.int32)
    vals = values or list(range(1, len(geoms) + 1))
    pairs = [(g, v) for g, v in zip(geoms, vals) if g is not None and not g.is_empty]
    if not pairs:
        return np.zeros(grid.shape, np.int32)
    return features.rasterize(pairs, out_shape=grid.shape, transform=grid.transform, fill=0,
                              dtype="int32")
