"""Multicoil MRI data: ESPIRiT maps, coil combination and compression, MRI split files."""

import h5py
import numpy as np
import pytest
from fastmri_files import write_volume
from patchpnp.cli import main
from patchpnp.data.coils import (
    coil_combine,
    compress_coils,
    espirit_maps,
    fft2c,
    ifft2c,
    rss,
)
from patchpnp.data.demo import DemoSimulation, build_demo_folder
from patchpnp.data.extract import center_crop, extract_volumes, merge_shards
from patchpnp.data.fastmri import DataError
from patchpnp.data.mri_extract import extract_mri_volumes, inspect_mri_volume
from scipy import ndimage

MRI = dict(image_size=24, calib_width=16, edge_slices=1, progress=False)


def phantom_with_maps(n=64, coils=6):
    """A complex object and smooth coil maps with sum |S|^2 = 1: (image, maps, object mask)."""
    y, x = np.mgrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j]
    obj = (x / 0.75) ** 2 + (y / 0.9) ** 2 < 1
    img = obj * (0.6 + 0.4 * np.cos(3 * x) * np.sin(2 * y) + 0.5 * ((x - 0.2) ** 2 + y**2 < 0.1))
    img = img * np.exp(0.5j * x)  # a smooth object phase, as MRI has
    maps = []
    for c in range(coils):
        a = 2 * np.pi * c / coils
        d2 = (x - 1.5 * np.cos(a)) ** 2 + (y - 1.5 * np.sin(a)) ** 2
        maps.append(np.exp(-d2 / 2) * np.exp(1j * (a + 0.7 * x * np.cos(a) - 0.5 * y)))
    maps = np.asarray(maps)
    return img, maps / np.sqrt((np.abs(maps) ** 2).sum(0)), obj


@pytest.mark.slow
def test_espirit_recovers_known_maps():
    img, maps, obj = phantom_with_maps()
    coil_images = maps * img
    est = espirit_maps(fft2c(coil_images).astype(np.complex64), calib_width=24)
    assert est.shape == maps.shape and est.dtype == np.complex64
    # Maps are defined up to one phase per pixel: compare the projection of one on the other.
    assert np.abs((np.conj(est) * maps).sum(0))[obj].min() > 0.95
    inner = ndimage.binary_erosion(obj, iterations=2)
    combined = coil_combine(coil_images, est)
    err = np.linalg.norm(np.abs(combined)[inner] - np.abs(img)[inner]) / np.linalg.norm(img[inner])
    assert err < 1e-3
    np.testing.assert_allclose(rss(coil_images), np.abs(img), atol=1e-12)
    for bad in (6, 65):  # not above the kernel width; larger than k-space
        with pytest.raises(ValueError, match="mri.calib_width"):
            espirit_maps(fft2c(coil_images), calib_width=bad)


def test_coil_axis_is_minus_three():
    rng = np.random.default_rng(0)
    vol = rng.standard_normal((3, 4, 8, 8)) + 1j * rng.standard_normal((3, 4, 8, 8))
    maps = rng.standard_normal((4, 8, 8)) + 0j
    assert rss(vol).shape == coil_combine(vol, maps).shape == (3, 8, 8)
    np.testing.assert_allclose(rss(vol)[1], rss(vol[1]))
    np.testing.assert_allclose(coil_combine(vol, maps)[2], (maps.conj() * vol[2]).sum(0))


def test_compress_coils_keeps_a_rank_limited_signal_and_pads():
    rng = np.random.default_rng(1)
    sources = rng.standard_normal((5, 3, 8, 8)) + 1j * rng.standard_normal((5, 3, 8, 8))
    mixing = rng.standard_normal((8, 3)) + 1j * rng.standard_normal((8, 3))
    k = np.einsum("cv,svhw->schw", mixing, sources).astype(np.complex64)  # 8 coils, rank 3
    for n in (3, 4):
        out = compress_coils(k, n)
        assert out.shape == (5, n, 8, 8) and out.dtype == np.complex64
        # Energy is kept sample by sample (the virtual coils span the signal).
        np.testing.assert_allclose(rss(out), rss(k), rtol=1e-4)
    padded = compress_coils(k, 10)
    assert padded.shape == (5, 10, 8, 8)
    np.testing.assert_array_equal(padded[:, :8], k)
    assert not padded[:, 8:].any()
    assert compress_coils(k, 8) is k


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Two training and two evaluation multicoil demo volumes, 32 x 32, 4 coils."""
    root = tmp_path_factory.mktemp("mri")
    simulation = DemoSimulation("multicoil", recon_size=32, train_slices=4, eval_slices=3,
                                edge_slices=1, coils=4)  # fmt: skip
    vols = build_demo_folder(root / "x", simulation=simulation, n_train=2, n_eval=2,
                             progress=False)  # fmt: skip
    return root, vols


def test_extract_writes_the_contract(demo, tmp_path):
    root, vols = demo
    train, ev = tmp_path / "train.h5", tmp_path / "eval.h5"
    assert extract_mri_volumes(vols[:2], "train", train, root=root, **MRI) == 2 * 4
    assert extract_mri_volumes(vols[:2], "eval", ev, root=root, **MRI) == 2
    with h5py.File(train) as f:
        assert f["images"].shape == (8, 2, 24, 24) and f["images"].dtype == np.float32
        assert "kspace" not in f and "maps" not in f  # training needs images only
        assert list(f["slice"][:4]) == [1, 2, 3, 4]
        assert f["source"].asstr()[0] == "x/file_mni_0000.h5"
        train_scale, train_range = f["scale"][:], f["data_range"][:]
        train_images = f["images"][:]
    with h5py.File(ev) as f:
        attrs = dict(f.attrs)
        assert attrs["split"] == "eval" and attrs["crop_size"] == attrs["image_size"] == 24
        assert attrs["calib_width"] == 16 and attrs["coils"] == 4
        assert attrs["n_volumes"] == 2 and attrs["n_images"] == 2
        assert list(f["slice"][:]) == [3, 3]  # the central slice of 1 + 4 + 1
        images, kspace, maps = f["images"][:], f["kspace"][:], f["maps"][:]
        assert kspace.shape == maps.shape == (2, 4, 24, 24)
        assert kspace.dtype == maps.dtype == np.complex64
        scale, data_range = f["scale"][:], f["data_range"][:]
    # One scale per volume, from the non-edge slices, whichever split is written.
    np.testing.assert_allclose(scale, train_scale[[0, 4]])
    np.testing.assert_allclose(data_range, train_range[[0, 4]])
    np.testing.assert_allclose(images, train_images[[2, 6]], atol=1e-6)
    with h5py.File(vols[0]) as f:
        coil_images = center_crop(ifft2c(f["kspace"][1:5]), 24)
    magnitude = rss(coil_images)
    assert scale[0] == pytest.approx(np.percentile(magnitude, 99.5), rel=1e-5)
    assert data_range[0] == pytest.approx(magnitude.max() / scale[0], rel=1e-5)
    np.testing.assert_allclose(kspace[0] * scale[0], fft2c(coil_images[2]), atol=1e-4)

    # images = the coil-combined target, and k-space the measurement of S x where S lives.
    target = images[:, 0] + 1j * images[:, 1]
    coils = ifft2c(kspace)
    np.testing.assert_allclose(coil_combine(coils, maps), target, atol=1e-5)
    support = (np.abs(maps) ** 2).sum(1) > 0.5
    assert support.mean() > 0.5
    residual = (maps * target[:, None] - coils) * support[:, None]
    assert np.linalg.norm(residual) < 0.12 * np.linalg.norm(coils * support[:, None])


def test_coils_compress_or_pad(demo, tmp_path):
    _, vols = demo
    for n in (2, 6):
        out = tmp_path / f"c{n}.h5"
        extract_mri_volumes(vols[2:], "tune", out, coils=n, **MRI)
        with h5py.File(out) as f:
            assert f.attrs["coils"] == n and f["kspace"].shape == (2, n, 24, 24)
            if n == 6:  # the padded coils measure nothing and have no sensitivity
                assert not f["kspace"][:, 4:].any() and not f["maps"][:, 4:].any()


def test_merge_mri_shards(demo, tmp_path):
    _, vols = demo
    whole, merged = tmp_path / "whole.h5", tmp_path / "merged.h5"
    extract_mri_volumes(vols[2:], "eval", whole, **MRI)
    shards = [tmp_path / "s0.h5", tmp_path / "s1.h5"]
    for vol, shard in zip(vols[2:], shards, strict=True):
        args = ["--split", "eval", "--image-size", "24", "--calib-width", "16", "--edge-slices"]
        assert main(["mri-extract", str(vol), "--output", str(shard), *args, "1"]) == 0
    assert main(["merge", *map(str, shards), "--output", str(merged)]) == 0
    with h5py.File(whole) as a, h5py.File(merged) as b:
        for key in ("images", "kspace", "maps", "data_range", "scale", "slice"):
            np.testing.assert_array_equal(a[key][:], b[key][:])
        assert b["kspace"].dtype == np.complex64
        assert b.attrs["n_volumes"] == 2 and b.attrs["n_images"] == 2
        assert b.attrs["calib_width"] == 16 and b.attrs["coils"] == 4

    other = tmp_path / "other.h5"
    extract_mri_volumes(vols[3:], "eval", other, **{**MRI, "calib_width": 12})
    with pytest.raises(DataError, match=r"other\.h5: extraction settings"):
        merge_shards([shards[0], other], tmp_path / "m.h5")
    magnitude = tmp_path / "mag.h5"
    extract_volumes(vols[3:], "eval", magnitude, image_size=24, crop_size=24, progress=False)
    with pytest.raises(DataError, match=r"mag\.h5"):
        merge_shards([shards[0], magnitude], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def _fewer_slices(f):
    del f["reconstruction_rss"]
    f["reconstruction_rss"] = np.zeros((3, 32, 32), np.float32)


def _nan(f):
    f["kspace"][2, 1, 3, 3] = np.nan


NAN = r"slice 2 of 'kspace' contains NaN"
BAD = {
    "no k-space": (lambda p: _edit(p, lambda f: f.__delitem__("kspace")), r"no k-space", {}),
    "singlecoil": (lambda p: write_volume(p, "singlecoil", 4, 32), r"is singlecoil", {}),
    "slice count": (lambda p: _edit(p, _fewer_slices), r"\(3, 32, 32\).*\(4, 3, 32, 32\)", {}),
    "coil count": (
        lambda p: write_volume(p, "multicoil", 4, 32, coils=2),
        r"2 coils, but .*good\.h5 has 3.*mri\.coils",
        {},
    ),
    "too small": (lambda p: write_volume(p, "multicoil", 4, 20), r"than mri\.image_size", {}),
    "nan": (lambda p: _edit(p, _nan), NAN, {}),
    "nan, compressed": (lambda p: _edit(p, _nan), NAN, {"coils": 2}),  # read by the compression
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_named_and_writes_nothing(tmp_path, case):
    make, message, kw = BAD[case]
    good, bad = tmp_path / "good.h5", tmp_path / "bad.h5"
    write_volume(good, "multicoil", 4, 32)
    write_volume(bad, "multicoil", 4, 32)
    make(bad)
    out = tmp_path / "out.h5"
    with pytest.raises(DataError, match=message) as err:
        extract_mri_volumes([good, bad], "eval", out, **{**MRI, **kw})
    assert "bad.h5" in str(err.value)
    assert not out.exists() and not list(tmp_path.glob(".out.h5.*"))


def test_inspect_and_settings(tmp_path):
    vol = tmp_path / "v.h5"
    write_volume(vol, "multicoil", 4, 32, coils=3)
    info = inspect_mri_volume(vol)
    assert (info.n_slices, info.coils, info.height, info.width) == (4, 3, 32, 32)
    assert info.recon_key == "reconstruction_rss"
    _edit(vol, lambda f: f.__delitem__("reconstruction_rss"))  # k-space alone is enough
    assert inspect_mri_volume(vol).recon_key == ""
    with pytest.raises(DataError, match=r"mri\.calib_width 30.*mri\.image_size"):
        extract_mri_volumes([vol], "eval", tmp_path / "o.h5", **{**MRI, "calib_width": 30})
