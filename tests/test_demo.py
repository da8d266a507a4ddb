"""The embedded demo: fastMRI layout, consistency, determinism and disjoint splits."""

import h5py
import numpy as np
import pytest
from patchpnp.data import demo
from patchpnp.data.extract import extract_volumes
from patchpnp.data.fastmri import inspect_volume

SMALL = dict(recon_size=48, n_slices=4, edge_slices=1, coils=3, noise=0.01)


@pytest.mark.parametrize("layout", ["singlecoil", "multicoil"])
@pytest.mark.parametrize("oversampling", [1, 2])
def test_volume_has_fastmri_layout_and_consistent_kspace(tmp_path, layout, oversampling):
    spec = demo.DemoVolumeSpec(
        role="train",
        layout=layout,
        index=0,
        seed=1,
        stream=7,
        readout_oversampling=oversampling,
        **SMALL,
    )
    path = tmp_path / "file_mni_0000.h5"
    demo.write_volume(spec, path, train_slices=4)
    vol = inspect_volume(path, layout)
    assert (vol.n_slices, vol.height, vol.width) == (6, 48, 48)
    with h5py.File(path) as f:
        k = f["kspace"][:]
        recon = f[vol.recon_key][:]
        assert k.dtype == np.complex64
        assert k.shape == (
            (6, 48 * oversampling, 48) if layout == "singlecoil" else (6, 3, 48 * oversampling, 48)
        )
        assert "ismrmrdHeader" in f["ismrmrd_header"][()].decode()
        for key in ("acquisition", "max", "norm", "patient_id"):
            assert key in f.attrs
        index = f["demo_template_index"][:]
        assert index[0] == index[-1] == -1 and np.all(index[1:-1] >= 0)  # edges, anatomy
    # The reconstruction is what the k-space says: |IFFT| (singlecoil) or RSS over coils,
    # cropped to the reconstruction size.
    img = demo.ifft2c(k)
    mag = np.sqrt((np.abs(img) ** 2).sum(1)) if layout == "multicoil" else np.abs(img)
    pad = (48 * oversampling - 48) // 2
    np.testing.assert_allclose(mag[:, pad : pad + 48], recon, rtol=1e-4, atol=1e-5)
    # Edge slices are noise only; anatomical slices are not.
    assert recon[0].mean() < 0.15 * recon[2].mean()


def test_volumes_are_deterministic_and_differ_between_indices():
    a = demo.build_volume(demo.DemoVolumeSpec("train", "singlecoil", 3, 5, 1, **SMALL), 4)
    b = demo.build_volume(demo.DemoVolumeSpec("train", "singlecoil", 3, 5, 1, **SMALL), 4)
    c = demo.build_volume(demo.DemoVolumeSpec("train", "singlecoil", 4, 5, 1, **SMALL), 4)
    np.testing.assert_array_equal(a["kspace"], b["kspace"])
    assert not np.allclose(a["recon"], c["recon"])


def test_roles_are_the_splits_in_the_order_that_seeds_the_volumes():
    """ROLES comes from patchpnp.layout.SPLITS; its order keys every volume's draws, so a
    new split there must not move train, eval or tune (it would change every volume)."""
    assert demo.ROLES == ("train", "eval", "tune")


def test_bands_keep_roles_apart():
    _, mask = demo.load_head()
    b = demo.bands(mask, train_slices=12)
    train = {(a, p + d) for a, p in b["train"] for d in range(12 + demo.TRAIN_MARGIN)}
    for role in ("eval", "tune"):
        assert len(b[role]) >= 20
        for axis, pos in b[role]:
            nearest = min(abs(pos - p) for a, p in train if a == axis)
            assert nearest > demo.GAP, (role, axis, pos)
    assert not {tuple(x) for x in b["eval"]} & {tuple(x) for x in b["tune"]}


def test_extracted_demo_splits_are_disjoint_and_not_adjacent(tmp_path):
    """Through the real extraction code: every used slice's template position is checked."""

    def build(role, n, stream, slices):
        paths = []
        for i in range(n):
            spec = demo.DemoVolumeSpec(
                role,
                "singlecoil",
                i,
                seed=0,
                stream=stream,
                recon_size=48,
                n_slices=slices,
                edge_slices=1 if role == "train" else 0,
                noise=0.01,
            )
            paths.append(tmp_path / role / f"file_mni_{i:04d}.h5")
            demo.write_volume(spec, paths[-1], train_slices=12)
        return paths

    used = {}
    for role, n, slices in (("train", 8, 12), ("eval", 6, 5), ("tune", 4, 5)):
        paths = build(role, n, {"train": 1, "eval": 2, "tune": 2}[role], slices)
        out = tmp_path / f"{role}.h5"
        extract_volumes(paths, role, out, image_size=32, crop_size=48, edge_slices=1)
        positions = set()
        with h5py.File(out) as f:
            for src, sl in zip(f["source"].asstr()[:], f["slice"][:], strict=True):
                with h5py.File(src) as v:
                    positions.add((int(v.attrs["demo_axis"]), int(v["demo_template_index"][sl])))
        assert all(p >= 0 for _, p in positions), "an edge (noise-only) slice was extracted"
        used[role] = positions
    assert len(used["eval"]) == 6  # distinct central slices within a split
    for a, b in (("train", "eval"), ("train", "tune"), ("eval", "tune")):
        for axis, pos in used[b]:
            near = [p for ax, p in used[a] if ax == axis and abs(p - pos) <= demo.GAP]
            assert not near, f"{b} slice {axis}:{pos} touches {a} slices {near}"


def test_cli_builds_a_folder(tmp_path):
    from patchpnp.cli import main

    out = tmp_path / "mni_val"
    assert (
        main(
            [
                "demo",
                str(out),
                "--layout",
                "multicoil",
                "--eval",
                "2",
                "--tune",
                "1",
                "--recon-size",
                "32",
                "--eval-slices",
                "3",
                "--coils",
                "2",
            ]
        )
        == 0
    )
    files = sorted(out.glob("*.h5"))
    assert [f.name for f in files] == ["file_mni_0000.h5", "file_mni_0001.h5", "file_mni_0002.h5"]
    with h5py.File(files[2]) as f:
        assert f.attrs["demo_role"] == "tune" and f["kspace"].shape == (3, 2, 32, 32)


def test_flair_intensity_orders_grey_white_and_csf():
    """FLAIR-like: grey matter the brightest tissue, white matter darker, CSF darkest; no
    T1 or T2-like volume has grey matter brightest (the shift)."""
    zero, one = np.zeros(4, np.float32), np.ones(4, np.float32)
    gm = demo.flair_intensity(one, zero, one)
    wm = demo.flair_intensity(zero, one, one)
    csf = demo.flair_intensity(zero, zero, one)
    assert np.all(gm > wm) and np.all(wm > csf) and np.all(csf < 0.1)
    np.testing.assert_array_equal(demo.flair_intensity(zero, zero, zero), zero)  # outside
    # Partial volumes mix linearly; the rest of the brain mask is CSF.
    mixed = demo.flair_intensity(np.full(4, 0.5), np.full(4, 0.25), one)
    np.testing.assert_allclose(mixed, 0.5 * gm + 0.25 * wm + 0.25 * csf)


def test_template_tissues_make_grey_matter_brightest():
    gm, wm = demo.load_tissues()
    head, mask = demo.load_head()
    assert gm.shape == wm.shape == head.shape
    assert 0 <= gm.min() and gm.max() == 1 and 0 <= wm.min() and wm.max() == 1
    img = demo.flair_intensity(gm, wm, mask.astype(np.float32))
    csf = np.clip(mask - gm - wm, 0, 1)
    means = [img[(t > 0.9) & mask].mean() for t in (gm, wm, csf)]
    assert means[0] > means[1] > means[2]


def test_flair_volume_keeps_the_mixed_volumes_pose():
    kw = dict(role="eval", layout="multicoil", index=1, seed=2, stream=3, **SMALL)
    mixed = demo.build_volume(demo.DemoVolumeSpec(**kw), 4)
    flair = demo.build_volume(demo.DemoVolumeSpec(**kw, contrast="flair"), 4)
    acq = flair["attrs"]["acquisition"]
    assert acq.endswith("FLAIR") and acq[:-5] == mixed["attrs"]["acquisition"][:-2]
    assert acq == demo.AXIS_NAMES[flair["attrs"]["demo_axis"]] + "FLAIR"
    assert flair["attrs"]["demo_axis"] == mixed["attrs"]["demo_axis"]
    np.testing.assert_array_equal(flair["template_index"], mixed["template_index"])
    assert flair["kspace"].shape == mixed["kspace"].shape
    assert not np.allclose(flair["recon"], mixed["recon"])


def test_mixed_is_the_default_contrast_and_others_are_rejected():
    kw = dict(role="train", layout="singlecoil", index=2, seed=4, stream=9, **SMALL)
    default = demo.build_volume(demo.DemoVolumeSpec(**kw), 4)
    mixed = demo.build_volume(demo.DemoVolumeSpec(**kw, contrast="mixed"), 4)
    np.testing.assert_array_equal(default["kspace"], mixed["kspace"])
    np.testing.assert_array_equal(default["recon"], mixed["recon"])
    assert default["attrs"] == mixed["attrs"]
    assert demo.DemoSimulation("singlecoil").contrast == "mixed" == demo.CONTRASTS[0]
    for make in (
        lambda: demo.DemoVolumeSpec(**kw, contrast="t2"),
        lambda: demo.DemoSimulation("singlecoil", contrast="t2"),
    ):
        with pytest.raises(ValueError, match="'t2'.*mixed, flair"):
            make()


def test_cli_parses_the_contrast(tmp_path):
    from patchpnp.cli import arguments, build_parser
    from patchpnp.commands import COMMANDS

    argv = ["demo", str(tmp_path), "--layout", "singlecoil", "--eval", "1"]
    parse = lambda *extra: arguments(  # noqa: E731
        COMMANDS["demo"], build_parser().parse_args([*argv, *extra])
    )
    assert parse()["simulation"].contrast == "mixed"
    assert parse("--contrast", "flair")["simulation"] == demo.DemoSimulation(
        "singlecoil", contrast="flair"
    )
    with pytest.raises(SystemExit):
        parse("--contrast", "t2")


def test_build_demo_folder_passes_the_contrast(tmp_path):
    sim = demo.DemoSimulation("singlecoil", recon_size=32, eval_slices=2, contrast="flair")
    (path,) = demo.build_demo_folder(
        tmp_path / "mni_flair", simulation=sim, n_eval=1, progress=False
    )
    with h5py.File(path) as f:
        assert f.attrs["acquisition"].endswith("FLAIR")
