"""Data layer: simulated or real raw regions -> per-glacier cubes -> folds -> patches."""
