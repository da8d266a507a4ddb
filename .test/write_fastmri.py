"""Write fastMRI-shaped folders for the paper config's end-to-end run (.test/run-paper.sh).

The shapes are fastMRI's own, so every image size, crop, patch size, mask and coil
setting of config/paper.yaml meets the data it was written for:

- knee singlecoil: ``kspace`` complex64 ``[slices, 640, 368]`` (readout oversampled 2x,
  phase encoding wider than the field of view), ``reconstruction_esc`` float32
  ``[slices, 320, 320]``;
- brain multicoil: ``kspace`` complex64 ``[slices, coils, 640, 320]``, volumes of 4 and
  16 coils in turn (``mri.coils: 8`` pads the first and compresses the second),
  ``reconstruction_rss`` float32 ``[slices, 320, 320]``.

The k-space is consistent with the reconstruction, as in fastMRI: it is the centred
orthonormal FFT of (coil) images on the 640 x W grid plus complex noise, and the
reconstruction is the magnitude (singlecoil) or root sum of squares (multicoil) of the
centre 320 x 320 crop of its inverse FFT. The images are smooth, seeded phantoms: a
body ellipse with a bright rim and soft-edged inner structures that move through the
slices, smooth texture, shading and phase, and smooth coil sensitivities, so that the
priors, the solvers and ESPIRiT work on something image-like rather than noise.

The tests import this module (pyproject's pytest ``pythonpath``); run it as a script to
write a root holding the four folders config/paper.yaml names, with as many volumes as
an overlay's ``n_eval + n_tune`` ask for:

    python .test/write_fastmri.py ROOT [--config .test/config.yaml]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np
import yaml
from patchpnp.data.coils import fft2c, ifft2c, rss
from patchpnp.data.demo import _coil_maps, _smooth_field  # the demo's coil model
from patchpnp.data.extract import center_crop

HERE = Path(__file__).resolve().parent
RECON = 320  # fastMRI's reconstructions
READOUT = 640  # readout, 2x oversampled
KNEE_WIDTH = 368  # knee singlecoil phase encoding
BRAIN_WIDTH = 320
BRAIN_COILS = (4, 16)  # brain volumes alternate between these coil counts
NOISE = 0.004  # complex k-space noise std relative to the image's 99.5th percentile


def _soft_ellipse(y, x, cy, cx, ry, rx, angle, edge=0.03):
    """1 inside the ellipse, 0 outside, with a smooth edge (``edge`` in radius units)."""
    c, s = np.cos(angle), np.sin(angle)
    u = ((x - cx) * c + (y - cy) * s) / rx
    v = (-(x - cx) * s + (y - cy) * c) / ry
    r = np.sqrt(u**2 + v**2)
    return 0.5 * (1 - np.tanh((r - 1) / edge))


def phantom(rows: int, cols: int, n_slices: int, rng: np.random.Generator, extent: float = 0.85):
    """Smooth magnitude images ``[n_slices, rows, cols]`` (float32, peak about 1).

    Coordinates are in units of half the 320 px reconstruction, centred on the grid, so
    an ``extent`` below 1 keeps the body inside the crop and one above lets it run into
    the phase-encoding margin (as knee anatomy does). The body shrinks towards the ends
    of the volume (fastMRI's edge slices hold little anatomy); inner structures drift.
    """
    y = (np.arange(rows) - rows / 2 + 0.5)[:, None] / (RECON / 2)
    x = (np.arange(cols) - cols / 2 + 0.5)[None, :] / (RECON / 2)
    body_ry, body_rx = extent * rng.uniform(0.85, 1.0, 2)
    body_angle = rng.uniform(-0.3, 0.3)
    n_inner = 7
    inner = {
        "cy": rng.uniform(-0.5, 0.5, n_inner),
        "cx": rng.uniform(-0.5, 0.5, n_inner),
        "ry": rng.uniform(0.08, 0.35, n_inner),
        "rx": rng.uniform(0.08, 0.35, n_inner),
        "angle": rng.uniform(0, np.pi, n_inner),
        "value": rng.uniform(-0.35, 0.45, n_inner),
        "drift": rng.uniform(-0.15, 0.15, (n_inner, 2)),
    }
    freqs = rng.uniform(1.0, 6.0, (4, 2))
    phases = rng.uniform(0, 2 * np.pi, 4)
    shading = np.exp(_smooth_field(cols, rng, 0.15, rows))
    out = np.empty((n_slices, rows, cols), np.float32)
    for s in range(n_slices):
        z = 2 * (s + 0.5) / n_slices - 1  # -1 .. 1 through the volume
        grow = np.sqrt(max(1 - 0.85 * z**2, 0.05))
        ry, rx = body_ry * grow, body_rx * grow
        body = _soft_ellipse(y, x, 0, 0, ry, rx, body_angle)
        core = _soft_ellipse(y, x, 0, 0, 0.88 * ry, 0.88 * rx, body_angle)
        img = 0.45 * core + 0.9 * (body - core)  # bright rim (fat, scalp)
        for i in range(n_inner):
            cy = grow * (inner["cy"][i] + z * inner["drift"][i, 0])
            cx = grow * (inner["cx"][i] + z * inner["drift"][i, 1])
            blob = _soft_ellipse(
                y, x, cy, cx, grow * inner["ry"][i], grow * inner["rx"][i], inner["angle"][i], 0.08
            )
            img = img + inner["value"][i] * blob * core
        texture = sum(
            np.sin(np.pi * (f[0] * y + f[1] * x) + p + 2 * z)
            for f, p in zip(freqs, phases, strict=True)
        )
        img = np.clip(img + 0.04 * texture * core, 0, None) * shading
        out[s] = img
    return out / max(float(np.percentile(out, 99.5)), 1e-6)


def _header(rows: int, cols: int) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>'
        f"<encodedSpace><matrixSize><x>{rows}</x><y>{cols}</y><z>1</z></matrixSize>"
        "</encodedSpace>"
        f"<reconSpace><matrixSize><x>{RECON}</x><y>{RECON}</y><z>1</z></matrixSize>"
        "</reconSpace></encoding></ismrmrdHeader>\n"
    )


def write_volume(
    path: str | Path,
    layout: str,
    n_slices: int,
    seed: int,
    coils: int = 1,
    width: int | None = None,
) -> None:
    """One fastMRI-shaped volume (see the module docstring), written slice by slice."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    multicoil = layout == "multicoil"
    cols = width or (BRAIN_WIDTH if multicoil else KNEE_WIDTH)
    rng = np.random.default_rng(seed)
    mag = phantom(READOUT, cols, n_slices, rng, extent=0.8 if multicoil else 1.1)
    phase = np.exp(1j * _smooth_field(cols, rng, 0.6, READOUT)).astype(np.complex64)
    maps = _coil_maps(READOUT, cols, coils, rng) if multicoil else None
    k_shape = (n_slices, coils, READOUT, cols) if multicoil else (n_slices, READOUT, cols)
    key = "reconstruction_rss" if multicoil else "reconstruction_esc"
    recon = np.empty((n_slices, RECON, RECON), np.float32)
    with h5py.File(path, "w") as f:
        kspace = f.create_dataset("kspace", k_shape, np.complex64)
        for s in range(n_slices):
            image = mag[s] * phase
            if multicoil:
                image = maps * image[None]
            noise = rng.standard_normal((2, *image.shape), dtype=np.float32)
            k = (fft2c(image) + NOISE * (noise[0] + 1j * noise[1])).astype(np.complex64)
            kspace[s] = k
            crop = center_crop(ifft2c(k), RECON)
            recon[s] = rss(crop) if multicoil else np.abs(crop)
        f.create_dataset(key, data=recon)
        f.create_dataset("ismrmrd_header", data=_header(READOUT, cols))
        f.attrs.update(
            acquisition="AXT2" if multicoil else "CORPD_FBK",
            max=float(recon.max()),
            norm=float(np.linalg.norm(recon)),
            patient_id=path.stem,
        )


def write_root(
    root: str | Path,
    *,
    knee_train: int = 2,
    knee_val: int = 3,
    brain_train: int = 2,
    brain_val: int = 3,
    knee_slices: int = 36,
    brain_slices: int = 14,
    seed: int = 0,
) -> dict[str, list[Path]]:
    """The four folders of config/paper.yaml under ``root``; returns their files.

    Slices per volume: fastMRI's knee volumes have about 36, its brain volumes 16. A
    count must exceed twice the paper's ``edge_slices`` (5) for a volume to give
    training slices, and for every brain volume: MRI extraction scales each volume by
    its training slices.
    """
    root = Path(root)
    plan = {
        "knee_singlecoil_train": ("singlecoil", knee_train, knee_slices),
        "knee_singlecoil_val": ("singlecoil", knee_val, knee_slices),
        "brain_multicoil_train": ("multicoil", brain_train, brain_slices),
        "brain_multicoil_val": ("multicoil", brain_val, brain_slices),
    }
    written: dict[str, list[Path]] = {}
    for f, (folder, (layout, n, slices)) in enumerate(plan.items()):
        written[folder] = []
        for i in range(n):
            if layout == "multicoil":
                path = root / folder / f"file_brain_AXT2_{i:04d}.h5"
                coils = BRAIN_COILS[i % len(BRAIN_COILS)]
            else:
                path = root / folder / f"file{1000000 + i}.h5"
                coils = 1
            write_volume(path, layout, slices, seed=seed * 1000 + f * 100 + i, coils=coils)
            written[folder].append(path)
    return written


def volume_counts(config: str | Path) -> dict[str, int]:
    """``write_root``'s evaluation-folder sizes for an overlay: ``n_eval + n_tune``."""
    datasets = yaml.safe_load(Path(config).read_text())["data"]["datasets"]
    return {f"{name}_val": ds["n_eval"] + ds["n_tune"] for name, ds in datasets.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the fastmri_root to write")
    parser.add_argument("--config", type=Path, default=HERE / "config.yaml")
    parser.add_argument("--train-volumes", type=int, default=2)
    parser.add_argument("--knee-slices", type=int, default=36)
    parser.add_argument("--brain-slices", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    written = write_root(
        args.root,
        knee_train=args.train_volumes,
        brain_train=args.train_volumes,
        knee_slices=args.knee_slices,
        brain_slices=args.brain_slices,
        seed=args.seed,
        **volume_counts(args.config),
    )
    for folder, files in written.items():
        print(f"{args.root / folder}: {len(files)} volumes")


if __name__ == "__main__":
    main()
