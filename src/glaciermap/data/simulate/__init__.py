"""Scene simulator: a realistic multi-sensor region with known glacier outlines and retreat.

It writes the same raw-region format as real data (docs/data-format.md, section 1) plus a
`truth/` folder, so the rest of the pipeline cannot tell simulated from real input.

    from glaciermap.data.simulate import SimulateConfig, simulate_region
    simulate_region(SimulateConfig(seed=1, width_km=3, height_km=3), Path("data/raw"))
"""

from __future__ import annotations

from glaciermap.config.simulate import SimulateConfig

from .region import simulate_region

__all__ = ["SimulateConfig", "simulate_region"]
