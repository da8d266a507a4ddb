"""The embedded demo: fastMRI-layout volumes built from the MNI152 T1 template.

No MRI data set can be downloaded here, but the nilearn wheel ships the
MNI152 2009a T1 template (197 x 233 x 189, 1 mm). This module turns it into
fastMRI-layout HDF5 volumes (k-space, reconstruction, attributes, ISMRMRD
header), so that the demo goes through exactly the same extraction code as
real data.

Diversity matters more than realism here: a small prior trained only on
centred, black-bordered brains learns where the border is and then fails on
patches. Each volume therefore draws its own orientation (sagittal, coronal,
axial), in-plane rotation, zoom (up to anatomy running off the frame), shift,
left-right flip, T1 or T2-like contrast, gamma, bias field, smooth phase and,
for multicoil volumes, coil sensitivities. A synthetic skull and scalp ring is
added around the skull-stripped template so that the head has an outer edge.

The contrast is the folder's choice (``contrast``, one of :data:`CONTRASTS`):
``mixed`` draws T1 or T2-like per volume as above; ``flair`` makes every volume
FLAIR-like, from the MNI152 grey- and white-matter probability maps nilearn ships
beside the T1 (:func:`flair_intensity`: grey matter the brightest tissue, white
matter darker, CSF nulled). No mixed volume has grey matter as its brightest
tissue, so a prior trained on mixed volumes never sees this contrast: it is the
distribution shift that ``snakemake generalization`` evaluates under. A flair
volume makes the same random draws as the mixed volume of the same spec (same
slab, pose, gamma, shading, phase, coils and noise); only its intensities differ.

Training and evaluation slices never share or touch a template position: the
template's slice positions along each axis are cut into repeating bands
``train | gap | eval | gap | tune | gap`` and each role only samples its own
band. Each volume records the template axis and slice positions it used
(``demo_axis`` attribute, ``demo_template_index`` dataset) so tests can check
this.
"""

from __future__ import annotations

import importlib.util
import math
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from patchpnp.atomic import atomic_path
from patchpnp.layout import DEMO_CONTRASTS, RESOLUTION_SPLIT, SPLITS

TEMPLATE_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
# The template's tissue probability maps, on the T1's grid (the FLAIR-like contrast).
GM_FILE = "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"
WM_FILE = "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"
CONTRASTS = DEMO_CONTRASTS  # mixed: T1 or T2-like per volume; flair: every volume FLAIR-like
# FLAIR-like intensities of the pure tissues. In FLAIR the inversion pulse nulls CSF
# (0.05: dark, not quite black) and grey matter is brighter than white matter (longer
# T2, more proton density); real GM/WM ratios are about 1.1-1.3, 0.75 / 0.45 exaggerates
# it so that the shift is plain at the demo's small sizes and noise. Scalp fat stays
# bright, as in FLAIR (load_head's 0.8). T1 volumes have white matter brightest, T2-like
# ones CSF: none has grey matter brightest, which is what makes flair a shift.
FLAIR_GM, FLAIR_WM, FLAIR_CSF = 0.75, 0.45, 0.05
AXIS_NAMES = ("SAG", "COR", "AX")  # template axes 0 (x, L-R), 1 (y, P-A), 2 (z, I-S)
# The splits a volume serves (the resolution split's volumes are more eval ones). The
# order seeds each volume's draws: train, eval, tune, as tests/test_demo.py checks.
ROLES = tuple(s for s in SPLITS if s != RESOLUTION_SPLIT)
GAP = 3  # template slices (mm) between bands of different roles
EVAL_BAND = 3  # distinct central-slice positions per evaluation / tuning band
TRAIN_MARGIN = 6  # extra positions in a training band, so slabs start at different places


def _nilearn_file(name: str, what: str) -> Path:
    """A data file that the installed nilearn package ships (``datasets/data/``)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"nilearn is not installed; the demo needs its {what}")
    path = Path(spec.origin).parent / "datasets" / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found at {path} (nilearn 0.13.x ships it)")
    return path


def template_path() -> Path:
    """Locate the MNI152 T1 template inside the installed nilearn package."""
    return _nilearn_file(TEMPLATE_FILE, "MNI152 template")


def check_contrast(contrast: str) -> None:
    """Raise ValueError unless ``contrast`` is one of :data:`CONTRASTS`."""
    if contrast not in CONTRASTS:
        raise ValueError(
            f"unknown demo contrast {contrast!r}: choose one of {', '.join(CONTRASTS)}"
        )


@lru_cache(maxsize=1)
def load_head() -> tuple[np.ndarray, np.ndarray]:
    """The template as a head: (T1 intensities in [0, 1], brain mask), both [X, Y, Z].

    The template is skull-stripped; a skull (dark) and scalp (bright, as fat
    is in T1) shell is added at 0-4 mm and 4-9 mm outside the brain.
    """
    import nibabel as nib
    from scipy import ndimage

    brain = np.asarray(nib.load(template_path()).get_fdata(dtype=np.float32))
    brain = np.clip(brain / np.percentile(brain[brain > 0], 99.9), 0, 1)
    mask = brain > 0.05
    dist = ndimage.distance_transform_edt(~mask).astype(np.float32)  # mm outside the brain
    ramp = lambda d0, d1: np.clip((dist - d0) / (d1 - d0), 0, 1)  # noqa: E731
    scalp = 0.8 * ramp(3.0, 5.0) * (1 - ramp(8.0, 10.0))
    skull = 0.08 * (1 - ramp(3.0, 5.0)) * (dist > 0)
    head = np.where(mask, brain, skull + scalp).astype(np.float32)
    return head, mask


@lru_cache(maxsize=1)
def load_tissues() -> tuple[np.ndarray, np.ndarray]:
    """The template's grey- and white-matter probabilities in [0, 1], both [X, Y, Z] on
    the T1 template's grid (nilearn ships them beside it: :data:`GM_FILE`, :data:`WM_FILE`)."""
    import nibabel as nib

    t1 = nib.load(template_path())
    maps = []
    for name, what in ((GM_FILE, "MNI152 grey-matter map"), (WM_FILE, "MNI152 white-matter map")):
        path = _nilearn_file(name, what)
        img = nib.load(path)
        if img.shape != t1.shape or not np.allclose(img.affine, t1.affine):
            raise ValueError(
                f"{path}: grid {img.shape} is not the T1 template's {t1.shape} "
                f"({TEMPLATE_FILE}); the demo needs both on one grid"
            )
        prob = np.asarray(img.get_fdata(dtype=np.float32))
        top = float(prob.max())
        if top <= 0:
            raise ValueError(f"{path}: an empty probability map")
        maps.append(np.clip(prob / top, 0, 1))  # stored as 0..255: the maximum is 1
    return maps[0], maps[1]


def flair_intensity(gm: np.ndarray, wm: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """FLAIR-like intensity from tissue fractions: grey matter brightest, white matter
    darker, CSF (the brain mask's rest, ``brain - gm - wm``) nulled. Partial volumes mix
    linearly, so the intensity falls off with ``brain`` at the brain's edge."""
    csf = np.clip(brain - gm - wm, 0, 1)
    return FLAIR_GM * gm + FLAIR_WM * wm + FLAIR_CSF * csf


def bands(mask: np.ndarray, train_slices: int) -> dict[str, list[tuple[int, int]]]:
    """Per role, the ``(axis, position)`` template slices it may use.

    Bands repeat along each axis over the brain's extent:
    ``train (train_slices + margin) | gap | eval | gap | tune | gap``.
    """
    train_w = train_slices + TRAIN_MARGIN
    out: dict[str, list[tuple[int, int]]] = {r: [] for r in ROLES}
    for axis in range(3):
        profile = mask.sum(axis=tuple(a for a in range(3) if a != axis))
        inside = np.nonzero(profile > 200)[0]
        lo, hi = int(inside.min()), int(inside.max())
        pos = lo
        while pos + train_w <= hi + 1:
            out["train"].append((axis, pos))  # a band start: slabs go from here
            pos += train_w + GAP
            for role in ("eval", "tune"):
                out[role] += [(axis, p) for p in range(pos, min(pos + EVAL_BAND, hi + 1))]
                pos += EVAL_BAND + GAP
    return out


@dataclass(frozen=True)
class DemoVolumeSpec:
    """Everything that decides one demo volume."""

    role: str  # train | eval | tune
    layout: str  # singlecoil | multicoil
    index: int  # index of the volume in its folder
    seed: int
    stream: int  # distinguishes folders, so two datasets do not draw the same volumes
    recon_size: int = 96
    n_slices: int = 20  # slices with anatomy (train), or the slab size (eval / tune)
    edge_slices: int = 2  # noise-only slices added at each end
    coils: int = 4
    readout_oversampling: int = 1
    noise: float = 0.01
    contrast: str = "mixed"  # one of CONTRASTS

    def __post_init__(self):
        check_contrast(self.contrast)


def _rng(spec: DemoVolumeSpec) -> np.random.Generator:
    return np.random.default_rng([spec.seed, spec.stream, ROLES.index(spec.role), spec.index])


def _slab(
    spec: DemoVolumeSpec, rng: np.random.Generator, train_slices: int
) -> tuple[int, list[int]]:
    """Template axis and the positions of the volume's anatomical slices."""
    head, mask = load_head()
    choice = bands(mask, train_slices)[spec.role]
    if spec.role == "train":
        axis, start = choice[rng.integers(len(choice))]
        start += int(rng.integers(TRAIN_MARGIN + train_slices - spec.n_slices + 1))
        return axis, list(range(start, start + spec.n_slices))
    # Evaluation and tuning: the k-th volume of a folder takes the k-th position of a
    # fixed shuffle, so that central slices are distinct within a folder.
    order = np.random.default_rng([spec.seed, spec.stream, ROLES.index(spec.role)]).permutation(
        len(choice)
    )
    axis, centre = choice[order[spec.index % len(choice)]]
    half = spec.n_slices // 2
    size = head.shape[axis]
    return axis, [min(max(centre + d, 0), size - 1) for d in range(-half, spec.n_slices - half)]


def _oriented(head: np.ndarray, axis: int, positions: list[int]) -> np.ndarray:
    """Template slices as displayed images [S, rows, cols] (superior / anterior up)."""
    vol = np.take(head, positions, axis=axis)  # the axis is kept, of length S
    vol = np.moveaxis(vol, axis, 0)  # [S, a, b] with (a, b) the remaining axes in order
    # remaining axes: sag (y, z), cor (x, z), ax (x, y); show the last one upwards as rows.
    return np.ascontiguousarray(np.flip(np.swapaxes(vol, 1, 2), axis=1))


def _augment(slices: np.ndarray, spec: DemoVolumeSpec, rng: np.random.Generator) -> np.ndarray:
    """Resample [S, rows, cols] template slices onto the R x R frame with one random pose."""
    s, rows, cols = slices.shape
    r = spec.recon_size
    angle = math.radians(rng.uniform(-20, 20))
    zoom = math.exp(rng.uniform(math.log(0.85), math.log(1.9)))  # > 1.3: anatomy leaves the frame
    fov = max(rows, cols) / zoom  # mm covered by the frame
    shift = rng.uniform(-0.2, 0.2, size=2) * fov  # mm
    flip = -1.0 if rng.random() < 0.5 else 1.0
    cos, sin = math.cos(angle), math.sin(angle)
    # Output normalised (u, v) in [-1, 1] -> mm offsets -> template normalised coordinates.
    half = fov / 2
    theta = torch.tensor(
        [
            [flip * cos * half / (cols / 2), -sin * half / (cols / 2), shift[0] / (cols / 2)],
            [flip * sin * half / (rows / 2), cos * half / (rows / 2), shift[1] / (rows / 2)],
        ],
        dtype=torch.float32,
    )
    grid = F.affine_grid(theta[None].expand(s, 2, 3), [s, 1, r, r], align_corners=False)
    src = torch.from_numpy(slices)[:, None]
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0].numpy()


def _contrast(
    img: np.ndarray,
    brain: np.ndarray,
    rng: np.random.Generator,
    tissues: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, str]:
    """T1 as is, or a T2-like remap (CSF bright, white matter dark) inside the brain; with
    ``tissues`` (grey and white matter, resampled as ``img``), FLAIR-like inside the brain.
    FLAIR makes the same draws (the T1 / T2 choice is drawn, then not used)."""
    t2_draw = rng.random()
    if tissues is not None:
        weight = np.clip(brain * 4, 0, 1)  # inside from brain >= 0.25, a ramp below it
        img = weight * flair_intensity(*tissues, brain) + (1 - weight) * img
        kind = "FLAIR"
    elif t2_draw < 0.35:
        t2 = np.clip(1.15 - img, 0, 1) * np.clip(brain * 4, 0, 1)
        img = np.where(brain > 0.25, t2, img * 0.6)
        kind = "T2"
    else:
        kind = "T1"
    gamma = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
    return np.clip(img, 0, None) ** gamma, kind


def _smooth_field(
    r: int, rng: np.random.Generator, amplitude: float, rows: int | None = None
) -> np.ndarray:
    """A random low-order polynomial field on the [-1, 1]^2 grid (``rows`` x r)."""
    rows = rows or r
    v, u = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, r), indexing="ij")
    c = rng.normal(0, amplitude, size=5)
    return (c[0] * u + c[1] * v + c[2] * u * v + c[3] * u**2 + c[4] * v**2).astype(np.float32)


def _coil_maps(rows: int, cols: int, coils: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth complex sensitivities [C, rows, cols] with sum |S_c|^2 = 1 (RSS is unbiased)."""
    v, u = np.meshgrid(
        np.linspace(-1, 1, rows) * rows / cols, np.linspace(-1, 1, cols), indexing="ij"
    )
    start = rng.uniform(0, 2 * np.pi)
    maps = []
    for c in range(coils):
        a = start + 2 * np.pi * c / coils
        d2 = (u - 1.3 * np.cos(a)) ** 2 + (v - 1.3 * np.sin(a)) ** 2
        phase = rng.uniform(-np.pi, np.pi) + _smooth_field(cols, rng, 0.5, rows)
        maps.append(np.exp(-d2 / (2 * 1.0**2)) * np.exp(1j * phase))
    maps = np.stack(maps)
    return (maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))).astype(np.complex64)


def fft2c(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2D FFT over the last two axes (fastMRI's convention)."""
    return np.fft.fftshift(
        np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )


def ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )


def _header(spec: DemoVolumeSpec, rows: int) -> str:
    r = spec.recon_size
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">\n'
        "  <encoding>\n"
        f"    <encodedSpace><matrixSize><x>{rows}</x><y>{r}</y><z>1</z></matrixSize>"
        f"<fieldOfView_mm><x>{rows}</x><y>{r}</y><z>1</z></fieldOfView_mm></encodedSpace>\n"
        f"    <reconSpace><matrixSize><x>{r}</x><y>{r}</y><z>1</z></matrixSize>"
        f"<fieldOfView_mm><x>{r}</x><y>{r}</y><z>1</z></fieldOfView_mm></reconSpace>\n"
        "  </encoding>\n"
        "</ismrmrdHeader>\n"
    )


def build_volume(spec: DemoVolumeSpec, train_slices: int) -> dict:
    """Simulate one volume: returns k-space, reconstruction, attributes and provenance."""
    rng = _rng(spec)
    head, mask = load_head()
    axis, positions = _slab(spec, rng, train_slices)
    # Image and brain mask (and for flair the tissue maps) are resampled together, so
    # they share one pose.
    pose_seed = int(rng.integers(2**63))
    maps = [head, mask.astype(np.float32)]
    if spec.contrast == "flair":
        maps += load_tissues()
    both = _augment(
        np.concatenate([_oriented(m, axis, positions) for m in maps]),
        spec,
        np.random.default_rng(pose_seed),
    )
    imgs, brain, *tissues = np.split(both, len(maps))
    imgs, contrast = _contrast(imgs, brain, rng, tuple(tissues) if tissues else None)
    r = spec.recon_size
    imgs = imgs * np.exp(_smooth_field(r, rng, 0.12))[None]  # receive-field shading
    imgs = imgs / max(float(np.percentile(imgs, 99.5)), 1e-6)

    # Noise-only edge slices, as at the ends of a fastMRI volume.
    e = spec.edge_slices
    mag = np.concatenate(
        [np.zeros((e, r, r), np.float32), imgs.astype(np.float32), np.zeros((e, r, r), np.float32)]
    )
    template_index = np.array([-1] * e + positions + [-1] * e, dtype=np.int32)
    rows = r * spec.readout_oversampling  # oversampled readout, cropped in the reconstruction
    pad = (rows - r) // 2
    canvas = np.zeros((len(mag), rows, r), np.complex64)
    phase = _smooth_field(r, rng, 0.6, rows)
    canvas[:, pad : pad + r] = mag
    canvas = canvas * np.exp(1j * phase)[None]
    if spec.layout == "multicoil":
        canvas = canvas[:, None] * _coil_maps(rows, r, spec.coils, rng)[None]
    kspace = fft2c(canvas)
    kspace = kspace + spec.noise * (
        rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)
    ) / math.sqrt(2)
    kspace = kspace.astype(np.complex64)
    coil_images = ifft2c(kspace)
    if spec.layout == "multicoil":
        recon = np.sqrt((np.abs(coil_images) ** 2).sum(axis=1))
    else:
        recon = np.abs(coil_images)
    recon = recon[:, pad : pad + r].astype(np.float32)
    acquisition = f"{AXIS_NAMES[axis]}{contrast}"
    return {
        "kspace": kspace,
        "recon": recon,
        "attrs": {
            "acquisition": acquisition,
            "max": float(recon.max()),
            "norm": float(np.linalg.norm(recon)),
            "patient_id": f"mni152-{spec.role}-{spec.stream}-{spec.index:04d}",
            "demo_axis": axis,
            "demo_role": spec.role,
        },
        "template_index": template_index,
        "header": _header(spec, rows),
    }


def write_volume(spec: DemoVolumeSpec, path: str | Path, train_slices: int) -> None:
    """Build one demo volume and write it, atomically, in fastMRI layout."""
    vol = build_volume(spec, train_slices)
    key = "reconstruction_esc" if spec.layout == "singlecoil" else "reconstruction_rss"
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("kspace", data=vol["kspace"])
        f.create_dataset(key, data=vol["recon"])
        f.create_dataset("ismrmrd_header", data=vol["header"])
        f.create_dataset("demo_template_index", data=vol["template_index"])
        f.attrs.update(vol["attrs"])


def folder_stream(name: str) -> int:
    """A stable integer per folder name (Python's hash() is salted per process)."""
    return zlib.crc32(name.encode())


@dataclass(frozen=True)
class DemoSimulation:
    """How every volume of a demo folder is simulated (:class:`DemoVolumeSpec` per volume):
    its ``layout``, the ``seed``, the reconstruction's side, anatomical slices per training
    volume and per evaluation / tuning slab, noise-only slices at each end of a training
    volume, coils, the readout's oversampling, the k-space noise and the ``contrast``
    (one of :data:`CONTRASTS`: ``mixed``, T1 or T2-like per volume, or ``flair``)."""

    layout: str  # singlecoil | multicoil
    seed: int = 0
    recon_size: int = 96
    train_slices: int = 16
    eval_slices: int = 7
    edge_slices: int = 2
    coils: int = 4
    readout_oversampling: int = 1
    noise: float = 0.01
    contrast: str = "mixed"  # one of CONTRASTS

    def __post_init__(self):
        check_contrast(self.contrast)


def build_demo_folder(
    out_dir: str | Path,
    *,
    simulation: DemoSimulation,
    n_train: int = 0,
    n_eval: int = 0,
    n_tune: int = 0,
    n_more: int = 0,
    first: int = 0,
    progress: bool = True,
) -> list[Path]:
    """Write one demo folder: ``n_train`` training volumes, then the evaluation and tuning
    volumes, then ``n_more`` evaluation volumes more (snakemake resolution's), as
    ``file_mni_NNNN.h5`` (the names :class:`patchpnp.pipeline.plan.DemoFolder` expects).
    The folder's name seeds its own stream, so folders never share volumes; a volume
    depends on its role and its index within the role alone, so the extra evaluation
    volumes continue the first ones. ``first``: write only files numbered from it on."""
    from tqdm import tqdm

    out = Path(out_dir)
    roles = ["train"] * n_train + ["eval"] * n_eval + ["tune"] * n_tune + ["eval"] * n_more
    if first < 0 or first >= len(roles):
        raise ValueError(
            f"nothing to build: {len(roles)} volumes (--train, --eval, --tune, --more-eval), "
            f"from file {first} on"
        )
    stream = folder_stream(out.name)
    counters = {"train": 0, "eval": 0, "tune": 0}
    written = []
    for i, role in enumerate(
        tqdm(roles, desc=f"demo {out.name}", unit="vol", disable=not progress)
    ):
        if i < first:
            counters[role] += 1
            continue
        sim = simulation
        spec = DemoVolumeSpec(
            role=role,
            layout=sim.layout,
            index=counters[role],
            seed=sim.seed,
            stream=stream,
            recon_size=sim.recon_size,
            n_slices=sim.train_slices if role == "train" else sim.eval_slices,
            edge_slices=sim.edge_slices if role == "train" else 0,
            coils=sim.coils,
            readout_oversampling=sim.readout_oversampling,
            noise=sim.noise,
            contrast=sim.contrast,
        )
        counters[role] += 1
        written.append(out / f"file_mni_{i:04d}.h5")
        write_volume(spec, written[-1], train_slices=sim.train_slices)
    return written
