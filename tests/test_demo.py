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
