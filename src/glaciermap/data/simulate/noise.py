"""Deterministic smooth random fields (spectral synthesis with the FFT).

Every function takes a `numpy.random.Generator`, so a field depends only on the seed it was drawn
from and on the grid shape. Fields are periodic (FFT), which does not matter for scenes.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft


def _spectrum_grid(shape: tuple[int, int], cell: float) -> tuple[tuple[int, int], np.ndarray]:
    """Padded FFT shape and the radial wavenumber (cycles per metre) of its rfft2 layout."""
    fshape = (sfft.next_fast_len(shape[0], real=True), sfft.next_fast_len(shape[1], real=True))
    ky = sfft.fftfreq(fshape[0], d=cell).astype(np.float32)
    kx = sfft.rfftfreq(fshape[1], d=cell).astype(np.float32)
    k = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    return fshape, k


def _filtered(rng: np.random.Generator, shape: tuple[int, int], cell: float, filt) -> np.ndarray:
    fshape, k = _spectrum_grid(shape, cell)
    white = rng.standard_normal(fshape, dtype=np.float32)
    spec = sfft.rfft2(white, workers=1)
    spec *= filt(k)
    out = sfft.irfft2(spec, s=fshape, workers=1)[: shape[0], : shape[1]]
    out = out.astype(np.float32)
    out -= out.mean()
    sd = out.std()
    return out / sd if sd > 0 else out


def gaussian_field(rng: np.random.Generator, shape: tuple[int, int], cell: float,
                   scale_m: float) -> np.ndarray:
    """Zero-mean, unit-variance field smooth on `scale_m` (Gaussian spectrum)."""
    sigma_k = 1.0 / (2.0 * np.pi * max(scale_m, cell) / 2.0)
    return _filtered(rng, shape, cell, lambda k: np.exp(-0.5 * (k / sigma_k) ** 2))


def band_field(rng: np.random.Generator, shape: tuple[int, int], cell: float,
               wavelength_m: float, width: float = 0.45) -> np.ndarray:
    """Zero-mean, unit-variance band-pass field with features about `wavelength_m` across."""
    k0 = 1.0 / wavelength_m

    def filt(k):
        with np.errstate(divide="ignore"):
            lk = np.log(np.maximum(k, 1e-12) / k0)
        return np.exp(-0.5 * (lk / width) ** 2)

    return _filtered(rng, shape, cell, filt)


def fbm(rng: np.random.Generator, shape: tuple[int, int], cell: float, largest_m: float,
        smallest_m: float | None = None, beta: float = 2.0) -> np.ndarray:
    """Fractal (power-law, exponent `beta`) field with wavelengths in [smallest_m, largest_m]."""
    smallest = max(smallest_m or 2 * cell, 2 * cell)
    k_lo, k_hi = 1.0 / largest_m, 1.0 / smallest

    def filt(k):
        kk = np.maximum(k, k_lo)
        amp = kk ** (-beta / 2.0)
        amp = amp * np.exp(-0.5 * (k / k_hi) ** 2)
        amp[0, 0] = 0.0
        return amp

    return _filtered(rng, shape, cell, filt)


def ridged(rng: np.random.Generator, shape: tuple[int, int], cell: float, largest_m: float,
           smallest_m: float, gain: float = 0.55, lacunarity: float = 2.0,
           sharpness: float = 2.0) -> np.ndarray:
    """Ridged multifractal in [0, ~1]: sharp crests, smooth valleys (Musgrave-style).

    Octave `i` has wavelength largest_m / lacunarity**i; each octave's weight is modulated by the
    previous octave's value so detail concentrates on ridges and valleys stay smoother.
    """
    total = np.zeros(shape, np.float32)
    weight = np.ones(shape, np.float32)
    amp, norm = 1.0, 0.0
    lam = largest_m
    while lam >= max(smallest_m, 2.5 * cell):
        n = band_field(rng, shape, cell, lam)
        sig = np.clip(1.0 - np.abs(n) / 2.2, 0.0, 1.0) ** sharpness
        total += sig * weight * amp
        weight = np.clip(sig * 1.6, 0.0, 1.0)
        norm += amp
        amp *= gain
        lam /= lacunarity
    return total / norm
