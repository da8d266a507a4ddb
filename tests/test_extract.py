"""Extraction from fastMRI-layout volumes: both layouts, preprocessing, and bad input."""

import h5py
import numpy as np
import pytest
from fastmri_files import phantom, write_folder, write_volume
from patchpnp.data.extract import extract_volumes, merge_shards, preprocess
from patchpnp.data.fastmri import DataError, inspect_volume, list_volumes, split_eval_volumes

KW = dict(image_size=16, crop_size=32, edge_slices=1, scale_percentile=99.5)


@pytest.mark.parametrize("layout", ["singlecoil", "multicoil"])
def test_extract_train_and_eval(tmp_path, layout):
    vols = write_folder(tmp_path / "fm" / f"knee_{layout}_train", 3, layout, n_slices=6, size=40)
    out = tmp_path / "train.h5"
    n = extract_volumes(vols, "train", out, layout=layout, root=tmp_path / "fm", **KW)
    assert n == 3 * (6 - 2)  # edge slices dropped at both ends
    with h5py.File(out) as f:
        images = f["images"][:]
        assert images.shape == (12, 1, 16, 16) and images.dtype == np.float32
        assert images.min() >= 0 and images.max() <= 1
        assert list(f["slice"][:4]) == [1, 2, 3, 4]
        assert f["source"].asstr()[0] == f"knee_{layout}_train/file1000.h5"
        assert np.all(f["scale"][:] > 0)
        assert f.attrs["n_images"] == 12 and f.attrs["split"] == "train"

    ev = tmp_path / "eval.h5"
    assert extract_volumes(vols, "eval", ev, layout=layout, **KW) == 3
    with h5py.File(ev) as f:
        assert list(f["slice"][:]) == [3, 3, 3]  # the central slice of 6


def test_preprocess_crops_resizes_and_scales():
    rng = np.random.default_rng(0)
    x = rng.random((2, 50, 44)).astype(np.float32) * 7
    x[:, 25, 22] = 1000  # a hot pixel the percentile must ignore
    out, scale = preprocess(x, crop_size=40, image_size=40, percentile=99.5)
    crop = x[:, 5:45, 2:42]
    np.testing.assert_allclose(scale, np.percentile(crop.reshape(2, -1), 99.5, axis=1), rtol=1e-6)
    np.testing.assert_allclose(out, np.clip(crop / scale[:, None, None], 0, 1), rtol=1e-6)
    small, _ = preprocess(x, crop_size=40, image_size=20, percentile=100)
    assert small.shape == (2, 20, 20) and small.max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="smaller than the crop"):
        preprocess(x, crop_size=48, image_size=20, percentile=99.5)


def test_merge_shards_concatenates_in_order(tmp_path):
    vols = write_folder(tmp_path / "v", 5, n_slices=4, size=32)
    shards = []
    for i, part in enumerate([vols[:2], vols[2:4], vols[4:]]):
        shards.append(tmp_path / f"s{i}.h5")
        extract_volumes(part, "train", shards[-1], **KW)
    whole = tmp_path / "whole.h5"
    extract_volumes(vols, "train", whole, **KW)
    merged = tmp_path / "merged.h5"
    assert merge_shards(shards, merged) == 10
    with h5py.File(whole) as a, h5py.File(merged) as b:
        np.testing.assert_array_equal(a["images"][:], b["images"][:])
        assert list(a["source"].asstr()[:]) == list(b["source"].asstr()[:])
        assert b.attrs["n_volumes"] == 5 and b.attrs["n_images"] == 10


def test_merge_refuses_shards_with_different_settings(tmp_path):
    vols = write_folder(tmp_path / "v", 2, n_slices=4, size=32)
    extract_volumes(vols[:1], "train", tmp_path / "a.h5", **KW)
    extract_volumes(vols[1:], "train", tmp_path / "b.h5", **{**KW, "image_size": 32})
    with pytest.raises(DataError, match="differ"):
        merge_shards([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_eval_and_tune_volumes_are_disjoint(tmp_path):
    vols = write_folder(tmp_path / "val", 5, n_slices=3, size=32)
    listed = list_volumes(tmp_path, "val")
    assert listed == sorted(vols)
    parts = split_eval_volumes(listed, 3, 2, "val")
    assert parts["eval"] == listed[:3] and parts["tune"] == listed[3:]
    with pytest.raises(DataError, match="fewer than n_eval"):
        split_eval_volumes(listed, 4, 2, "val")


# --- bad input: each names the file and leaves no output ----------------------------------


def _no_output_left(folder):
    return not any(p.name.endswith((".h5", ".part")) for p in folder.iterdir())


def test_missing_or_empty_fastmri_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list_volumes(tmp_path / "nowhere", "knee_singlecoil_train")
    with pytest.raises(DataError, match=r"knee_singlecoil_train' does not exist"):
        list_volumes(tmp_path, "knee_singlecoil_train")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no volumes here")
    with pytest.raises(DataError, match="holds no .h5 volumes"):
        list_volumes(tmp_path, "empty")


@pytest.mark.parametrize("kind", ["truncated", "not_hdf5", "empty_file"])
def test_truncated_or_foreign_file(tmp_path, kind):
    good = write_folder(tmp_path / "v", 2, n_slices=4, size=32)
    bad = tmp_path / "v" / "file9999.h5"
    if kind == "truncated":
        data = good[0].read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "not_hdf5":
        bad.write_text("this is a DICOM, honestly")
    else:
        bad.write_bytes(b"")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(DataError, match="file9999.h5") as err:
        extract_volumes([*good, bad], "train", out_dir / "train.h5", **KW)
    assert "HDF5" in str(err.value) or "truncated" in str(err.value)
    assert _no_output_left(out_dir)


@pytest.mark.parametrize("layout", ["singlecoil", "multicoil"])
def test_volume_without_reconstruction(tmp_path, layout):
    path = tmp_path / "file1.h5"
    write_volume(path, layout, with_recon=False)
    key = "reconstruction_esc" if layout == "singlecoil" else "reconstruction_rss"
    with pytest.raises(DataError, match=f"file1.h5: {layout} volume has no '{key}'"):
        extract_volumes([path], "eval", tmp_path / "out.h5", **KW)
    assert not (tmp_path / "out.h5").exists()


def test_wrong_layout_is_named(tmp_path):
    path = tmp_path / "file1.h5"
    write_volume(path, "multicoil")
    with pytest.raises(
        DataError, match="file1.h5: volume is multicoil, but the dataset expects singlecoil"
    ):
        inspect_volume(path, "singlecoil")


def test_slice_smaller_than_crop(tmp_path):
    vols = write_folder(tmp_path / "v", 2, n_slices=4, size=32)
    small = tmp_path / "v" / "file2000.h5"
    write_volume(small, size=24)
    out = tmp_path / "out.h5"
    with pytest.raises(
        DataError, match=r"file2000.h5: slices are 24 x 24, smaller than the crop 32 x 32"
    ):
        extract_volumes([*vols, small], "train", out, **KW)
    assert not out.exists()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_volume(tmp_path, value):
    vols = write_folder(tmp_path / "v", 2, n_slices=4, size=32)
    recon = phantom(5, 32)
    recon[2, 10, 10] = value
    bad = tmp_path / "v" / "file3000.h5"
    write_volume(bad, recon=recon)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(
        DataError, match=r"file3000.h5: slice 2 of 'reconstruction_esc' contains NaN or inf"
    ):
        extract_volumes([*vols, bad], "train", out_dir / "train.h5", **KW)
    assert _no_output_left(out_dir)


def test_too_few_slices_for_edges(tmp_path):
    path = tmp_path / "file1.h5"
    write_volume(path, n_slices=2)
    with pytest.raises(DataError, match="file1.h5: 2 slices leave none"):
        extract_volumes([path], "train", tmp_path / "o.h5", **KW)


def test_cli_reports_bad_input_with_exit_status_2(tmp_path, capsys):
    from patchpnp.cli import main

    bad = tmp_path / "file1.h5"
    bad.write_text("garbage")
    rc = main(
        [
            "extract",
            str(bad),
            "--split",
            "eval",
            "--output",
            str(tmp_path / "o.h5"),
            "--image-size",
            "16",
            "--crop-size",
            "32",
        ]
    )
    assert rc == 2
    assert "file1.h5: not an HDF5 file" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()
