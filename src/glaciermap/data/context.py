"""Context tiles: the scene beyond the glacier cubes, for training patches of the ground off the ice.

A glacier's cube is its box plus `data.buffer_m`, so training patches only ever see the ground
beside the training glaciers. Terrain that lies elsewhere (a forested valley floor between them)
is never seen, and a fold whose test glaciers reach down to it maps it as ice (README: "Why fold 4
maps forest"). Context tiles cover the region on a regular grid of `data.context_tile_m`:

    region footprint (every raster needed)      one tile, as written
    +---------+---------+---------+--+          +-----------------+
    | r00c00  | r00c01  | r00c02  |  |          |  valid: ground  |
    |   [==box==]  [=====box=====]   |          |  [####]  beyond |
    +---------+---------+---------+--+          |  [####]  every  |
    | r01c00  | r01c01  | r01c02  |  |          |   box   cube    |
    +---------+---------+---------+--+          +-----------------+
                                                 [####] = inside a glacier cube: mask_invalid

Every pixel inside any glacier cube's extent is marked invalid in the tile, so no pixel a tile
teaches with is a pixel of any glacier's cube: every fold may train on every tile without seeing
a test glacier's labels (its imagery can still appear as unlabelled input at a tile's edge). The
tiles hold no outline pixel that is valid (each outline lies inside its own cube), so their
target is background throughout. `patches.context_centres` is the share of training patches
centred on them.
"""

from __future__ import annotations

import math

import numpy as np
from rasterio import Affine
from rasterio.crs import CRS
from shapely.geometry import box

from glaciermap.data.grid import Grid

#: tiles with less of their area outside every glacier cube (and inside the region) are not read
MIN_OUTSIDE_FRACTION = 0.1
#: tiles with fewer valid pixels once read (cloud over most of what the cubes leave) are not written
MIN_USABLE_FRACTION = 0.05


def tile_id(row: int, col: int) -> str:
    return f"context-r{row:02d}c{col:02d}"


def context_grids(region_area, cube_boxes, tile_m: float, res: float, crs: CRS,
                  min_outside: float = MIN_OUTSIDE_FRACTION) -> list[tuple[str, Grid]]:
    """(tile id, grid) of every context tile: `tile_m` squares from the north-west corner of
    `region_area`'s bounds (snapped outwards to the resolution), clipped to those bounds, kept
    when at least `min_outside` of the tile lies inside `region_area` and outside `cube_boxes`
    (a shapely geometry: the union of the glacier cubes' extents)."""
    minx, miny, maxx, maxy = region_area.bounds
    minx, miny = math.floor(minx / res) * res, math.floor(miny / res) * res
    maxx, maxy = math.ceil(maxx / res) * res, math.ceil(maxy / res) * res
    step = max(round(tile_m / res), 1) * res
    free = region_area.difference(cube_boxes)
    out = []
    for r, top in enumerate(np.arange(maxy, miny, -step)):
        for c, left in enumerate(np.arange(minx, maxx, step)):
            right, bottom = min(left + step, maxx), max(top - step, miny)
            tile = box(left, bottom, right, top)
            if free.intersection(tile).area < min_outside * tile.area:
                continue
            width, height = round((right - left) / res), round((top - bottom) / res)
            out.append((tile_id(r, c), Grid(crs, Affine(res, 0, float(left), 0, -res, float(top)), width, height)))
    return out


__all__ = ["context_grids", "tile_id", "MIN_OUTSIDE_FRACTION", "MIN_USABLE_FRACTION"]
