"""CT data (docs/methods.md section 14): synthetic phantoms and the DICOM reader."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
from patchpnp.data.ct import (
    SYNTHETIC_SOURCE,
    dicom_images,
    hu_to_unit,
    phantom,
    phantoms,
    read_dicom_series,
    write_dicom_split,
    write_phantom_split,
)
from patchpnp.data.fastmri import DataError
from patchpnp.formats import read_split, split_settings
from write_ct_dicom import write_dicom


# -- phantoms -----------------------------------------------------------------------------------
def test_phantoms_are_deterministic_per_seed_and_index():
    batch = phantoms(4, 32, seed=3)
    assert batch.shape == (4, 32, 32) and batch.dtype == np.float32
    assert batch.min() >= 0 and batch.max() <= 1 and batch.max() > 0.9
    np.testing.assert_array_equal(phantom(2, 32, seed=3), batch[2])
    np.testing.assert_array_equal(phantoms(2, 32, seed=3, start=2), batch[2:])
    assert not np.array_equal(phantom(2, 32, seed=4), batch[2])
    assert not np.array_equal(batch[0], batch[1])
    # the body lies inside the inscribed circle: the corners are empty
    assert np.all(batch[:, 0, 0] == 0) and np.all(batch[:, -1, -1] == 0)


def test_phantom_split_reads_back(tmp_path):
    path = tmp_path / "train.h5"
    assert write_phantom_split(path, 3, 32, seed=1, split="train", start=5) == 3
    split = read_split(path)
    np.testing.assert_array_equal(split.images[:, 0], phantoms(3, 32, seed=1, start=5))
    assert split.images.shape == (3, 1, 32, 32)
    assert split.source == [f"{SYNTHETIC_SOURCE}/phantom_{i:04d}" for i in (5, 6, 7)]
    assert split.names()[0] == "synthetic_ellipses/phantom_0005:0"
    settings = split_settings(path)
    assert settings["split"] == "train" and settings["image_size"] == 32
    assert settings["n_volumes"] == 3 and math.isnan(settings["scale_percentile"])
    with h5py.File(path) as f:
        assert bool(f.attrs["synthetic"]) and f.attrs["n_images"] == 3
        np.testing.assert_array_equal(f["scale"][:], 1.0)
    assert not list(tmp_path.glob(".*.part"))


# -- DICOM ---------------------------------------------------------------------------------------
def make_series(folder, n=3, shape=(8, 8)):
    """Slices whose stored value is 100 * slice position, written in scrambled name order."""
    folder.mkdir(parents=True, exist_ok=True)
    names = ["c.dcm", "a.dcm", "b.dcm", "d.dcm", "e.dcm"][:n]
    for k, name in enumerate(names):
        write_dicom(folder / name, np.full(shape, 1024 + 100 * k), instance=k + 1, z=2.5 * k)
    return folder


def test_hu_window_is_linear_in_attenuation():
    hu = np.array([-3024.0, -1000.0, 0.0, 500.0, 1000.0, 3000.0])
    np.testing.assert_allclose(hu_to_unit(hu), [0, 0, 0.5, 0.75, 1, 1])
    np.testing.assert_allclose(hu_to_unit(hu, hu_max=2000), [0, 0, 1 / 3, 0.5, 2 / 3, 1])
    with pytest.raises(ValueError):
        hu_to_unit(hu, hu_max=-1000)


def test_series_is_read_in_hu_and_in_anatomical_order(tmp_path):
    folder = make_series(tmp_path / "L067")
    series = read_dicom_series(folder)
    assert [p.name for p in series.files] == ["c.dcm", "a.dcm", "b.dcm"]
    # stored 1024 + 100 k, intercept -1024: HU = 100 k
    np.testing.assert_allclose(series.hu[:, 0, 0], [0, 100, 200])
    (tmp_path / "scaled").mkdir()
    write_dicom(tmp_path / "scaled" / "s.IMA", np.full((4, 4), 10), slope=2.5, intercept=-1000)
    assert read_dicom_series(tmp_path / "scaled").hu[0, 0, 0] == pytest.approx(-975.0)


def test_dicom_images_are_windowed_and_resized(tmp_path):
    folder = make_series(tmp_path / "L067", shape=(16, 12))
    images, series = dicom_images(folder, image_size=8)
    assert images.shape == (3, 8, 8) and images.dtype == np.float32
    np.testing.assert_allclose(images[:, 4, 4], [0.5, 0.55, 0.6], atol=1e-6)
    path = tmp_path / "eval.h5"
    assert write_dicom_split([folder], path, image_size=8, split="eval", root=tmp_path) == 1
    split = read_split(path)
    assert split.source == ["L067"] and list(split.slice) == [1]
    with h5py.File(path) as f:
        assert not bool(f.attrs["synthetic"]) and f.attrs["crop_size"] == 12
        np.testing.assert_allclose(f["scale"][:], 2.0)
    assert write_dicom_split([folder], tmp_path / "train.h5", image_size=8, split="train") == 3


def test_dicom_errors_name_the_file(tmp_path):
    bad = tmp_path / "text"
    bad.mkdir()
    (bad / "notes.dcm").write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.dcm: not a DICOM file"):
        read_dicom_series(bad)

    cases = {
        "nopixels": (dict(pixels=False), "no pixel data"),
        "frames": (dict(stored=np.zeros((2, 4, 4))), "expected one 2D slice"),
        "nan": (dict(stored=np.full((4, 4), np.nan), float_pixels=True), "NaN or infinite"),
        "norescale": (dict(rescale=False), "cannot be converted to HU"),
    }
    for name, (kwargs, message) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        stored = kwargs.pop("stored", np.zeros((4, 4)))
        write_dicom(folder / f"{name}.dcm", stored, **kwargs)
        with pytest.raises(DataError, match=rf"{name}\.dcm: .*{message}"):
            read_dicom_series(folder)

    mixed = make_series(tmp_path / "mixed", n=2)
    write_dicom(mixed / "z.dcm", np.zeros((6, 6)), instance=9, z=9.0)
    with pytest.raises(DataError, match=r"z\.dcm: slice of shape \(6, 6\) differs"):
        read_dicom_series(mixed)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no"):
        read_dicom_series(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        read_dicom_series(tmp_path / "missing")
    out = tmp_path / "split.h5"
    with pytest.raises(DataError, match=r"notes\.dcm"):
        write_dicom_split([mixed.parent / "text"], out, image_size=4, split="train")
    assert not out.exists() and not list(tmp_path.glob(".*.part"))


def test_ci_ct_root_has_the_aapm_shape_and_reads_back_as_its_phantoms(tmp_path):
    """.test/write_ct_dicom.py: patient folders of 16-bit slices at intercept -1024,
    which the reader orders by position and windows back to the phantoms."""
    from patchpnp.data.ct import ellipse_phantom, patient_folders
    from write_ct_dicom import write_ct_root

    counts = write_ct_root(tmp_path, train_patients=1, eval_patients=2, slices=3, size=32)
    assert counts == {"train": 1, "test": 2}
    patients = patient_folders(tmp_path / "test")
    assert [p.name for p in patients] == ["L1000", "L1001"]
    series = read_dicom_series(patients[1])
    assert series.hu.shape == (3, 32, 32)
    # z goes down while the names count up: slice k is the k-th file
    assert [f.name for f in series.files] == [f"L1001_{k:04d}.IMA" for k in (3, 2, 1)]
    expected = ellipse_phantom(32, np.random.default_rng([1001, 0]), supersample=2)
    np.testing.assert_allclose(hu_to_unit(series.hu[-1]), expected, atol=0.5 / 2000)
    assert write_dicom_split(patients, tmp_path / "eval.h5", image_size=32, split="eval") == 2
