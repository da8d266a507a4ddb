"""Write AAPM / Mayo-shaped DICOM CT folders for the paper config's end-to-end run.

config/paper.yaml's `snakemake padis` reads low-dose CT as the AAPM grand challenge
ships it: one folder per patient, each a series of single-frame CT slices, 512 x 512
signed 16-bit pixels with ``RescaleIntercept -1024`` and ``RescaleSlope 1``, ordered by
``ImagePositionPatient`` (the file names need not be). This writes that shape under
``padis.ct``'s ``train_dir`` and ``eval_dir`` (``train`` and ``test``), filled with the
seeded ellipse phantoms of ``patchpnp.data.ct`` in Hounsfield units (air -1000, the
phantoms' brightest tissue at the window's top ``hu_max``). They are synthetic: the run
checks shapes, headers and the pipeline, not CT anatomy.

The tests import this module (pyproject's pytest ``pythonpath``); as a script it writes
as many evaluation patients as an overlay's ``padis.ct`` ``n_eval + n_tune`` ask for:

    python .test/write_ct_dicom.py ROOT [--config .test/config.yaml]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml
from patchpnp.data.ct import ellipse_phantom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

HERE = Path(__file__).resolve().parent
AAPM_SIZE = 512  # the AAPM / Mayo slices' rows and columns
INTERCEPT = -1024.0  # stored 0 is -1024 HU, as the AAPM files have it
SLICE_MM = 3.0  # their 3 mm reconstructions


def write_dicom(
    path,
    stored: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = INTERCEPT,
    instance: int = 1,
    z: float = 0.0,
    rescale: bool = True,
    pixels: bool = True,
    float_pixels: bool = False,
    patient: str = "",
) -> None:
    """One CT slice (or a multi-frame image, for a 3D ``stored``) in a DICOM file.

    ``stored`` holds the raw pixel values (HU = ``slope * stored + intercept``). The
    switches leave parts out or change their kind, for the reader's error tests.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.InstanceNumber, ds.PatientID = "CT", instance, patient
    ds.ImagePositionPatient = [0.0, 0.0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape[-2:]
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if pixels and float_pixels:
        ds.BitsAllocated = 32
        ds.FloatPixelData = stored.astype(np.float32).tobytes()
    elif pixels:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = stored.astype(np.int16).tobytes()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_patient(
    folder: str | Path, n_slices: int, seed: int, size: int = AAPM_SIZE, hu_max: float = 1000.0
) -> list[Path]:
    """One patient's series: ``n_slices`` phantoms of ``default_rng([seed, k])`` in HU,
    ``z`` going down the body while the file names count up (the reader orders by ``z``)."""
    folder = Path(folder)
    files = []
    for k in range(n_slices):
        unit = ellipse_phantom(size, np.random.default_rng([seed, k]), supersample=2)
        hu = unit * (1000.0 + hu_max) - 1000.0
        path = folder / f"{folder.name}_{k + 1:04d}.IMA"
        write_dicom(path, np.rint(hu - INTERCEPT), instance=k + 1, z=-SLICE_MM * k,
                    patient=folder.name)  # fmt: skip
        files.append(path)
    return files


def write_ct_root(
    root: str | Path,
    *,
    train_patients: int,
    eval_patients: int,
    slices: int,
    train_slices: int | None = None,
    train_dir: str = "train",
    eval_dir: str = "test",
    size: int = AAPM_SIZE,
    seed: int = 0,
) -> dict[str, int]:
    """``root/<train_dir>`` and ``root/<eval_dir>``, one folder per patient of ``slices``
    slices (``train_slices`` for training patients, when given: training uses every
    slice, evaluation only the central one); returns how many patients each holds.
    Patients are named as the AAPM set names them (L067...)."""
    root = Path(root)
    counts = {}
    for offset, (folder, n) in enumerate(((train_dir, train_patients), (eval_dir, eval_patients))):
        n_slices = train_slices if folder == train_dir and train_slices else slices
        for p in range(n):
            number = 1000 * offset + p
            write_patient(root / folder / f"L{number:03d}", n_slices, seed=seed * 10_000 + number,
                          size=size)  # fmt: skip
        counts[folder] = n
    return counts


def eval_patients(config: str | Path) -> int:
    """The evaluation patients an overlay's ``padis.ct`` needs: ``n_eval + n_tune``."""
    ct = yaml.safe_load(Path(config).read_text())["padis"]["ct"]
    return int(ct["n_eval"]) + int(ct.get("n_tune", 0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the padis.ct.root to write")
    parser.add_argument("--config", type=Path, default=HERE / "config.yaml")
    parser.add_argument("--train-patients", type=int, default=2)
    parser.add_argument("--slices", type=int, default=3, help="slices per evaluation patient")
    # 2 x 16: the overlay's position-aware prior trains on batches of 32 images
    parser.add_argument("--train-slices", type=int, default=16, help="per training patient")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = write_ct_root(
        args.root,
        train_patients=args.train_patients,
        eval_patients=eval_patients(args.config),
        slices=args.slices,
        train_slices=args.train_slices,
        seed=args.seed,
    )
    for folder, n in counts.items():
        each = args.train_slices if folder == "train" else args.slices
        print(f"{args.root / folder}: {n} patients of {each} slices")


if __name__ == "__main__":
    main()
