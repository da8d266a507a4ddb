"""The split and reconstruction file formats (patchpnp.formats), written and read back."""

import h5py
import numpy as np
import pytest
from patchpnp.formats import (
    FormatError,
    append_split,
    create_split,
    image_names,
    iter_split,
    read_image,
    read_split,
    split_geometry,
    split_settings,
    write_recon,
)

SETTINGS = {"split": "eval", "image_size": 8, "crop_size": 8, "edge_slices": 0,
            "scale_percentile": 99.5, "n_volumes": 2}  # fmt: skip


def make_split(path, n=5):
    rng = np.random.default_rng(0)
    images = rng.random((n, 8, 8), dtype=np.float32)
    with h5py.File(path, "w") as f:
        create_split(f, 8, SETTINGS)
        append_split(f, images[:3], ["a.h5"] * 3, np.arange(3), np.ones(3))
        append_split(f, images[3:], ["b.h5"] * (n - 3), np.arange(n - 3), np.ones(n - 3))
    return images


def test_split_round_trip(tmp_path):
    path = tmp_path / "eval.h5"
    images = make_split(path)
    split = read_split(path)
    np.testing.assert_array_equal(split.images[:, 0], images)
    assert split.names() == ["a.h5:0", "a.h5:1", "a.h5:2", "b.h5:0", "b.h5:1"]
    assert read_split(path, limit=2).images.shape == (2, 1, 8, 8)
    assert split_geometry(path) == (5, (1, 8, 8))
    assert split_settings(path)["n_volumes"] == 2
    chunks = list(iter_split(path, chunk=2))
    assert [len(c[0]) for c in chunks] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), images[:, None])


def test_bad_files_are_named(tmp_path):
    with pytest.raises(FormatError, match=r"nothere\.h5: file not found"):
        read_split(tmp_path / "nothere.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(FormatError, match=r"text\.h5: not a readable HDF5"):
        read_split(tmp_path / "text.h5")
    with h5py.File(tmp_path / "flat.h5", "w") as f:
        f["images"] = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(FormatError, match=r"flat\.h5.*extracted split"):
        split_geometry(tmp_path / "flat.h5")
    with pytest.raises(FormatError, match=r"lacks the attributes"):
        split_settings(tmp_path / "flat.h5")


def test_recon_keeps_complex_measurements_and_checks_reads(tmp_path):
    path = tmp_path / "r.h5"
    recon = np.ones((2, 1, 8, 8), np.float64)
    kspace = np.ones((2, 4, 8, 8), np.complex64)
    with h5py.File(path, "w") as f:
        write_recon(f, recon, kspace, {"task": "mri", "size": "whole"})
    with h5py.File(path) as f:
        assert f["recon"].dtype == np.float32 and np.iscomplexobj(f["measurement"][:])
        assert f.attrs["task"] == "mri"
        assert read_image(f, "recon", 1).shape == (8, 8)
        with pytest.raises(FormatError, match="out of range"):
            read_image(f, "recon", 2)
        with pytest.raises(FormatError, match="expected real images"):
            read_image(f, "measurement", 0)
        with pytest.raises(FormatError, match="differs from ground truth"):
            read_image(f, "recon", 0, shape=(4, 4))


def test_image_names_need_matching_lengths():
    assert image_names(["v.h5"], [3]) == ["v.h5:3"]
    with pytest.raises(ValueError):
        image_names(["v.h5"], [3, 4])
