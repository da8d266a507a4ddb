"""The CI run of the paper config at fastMRI's shapes (.test/): the writer's volumes have
fastMRI's shapes and consistent k-space, and the overlay .test/config.yaml changes only
what it may (network, steps, counts, threads), merged over config/paper.yaml as
Snakemake merges two config files."""

from __future__ import annotations

import copy
import fnmatch

import h5py
import numpy as np
import pytest
import yaml
from patchpnp.data.coils import ifft2c, rss
from patchpnp.data.extract import center_crop, extract_volumes
from patchpnp.data.fastmri import inspect_volume
from patchpnp.data.mri_extract import inspect_mri_volume
from patchpnp.pipeline.config import validate_config
from snakemake.utils import update_config
from workflow_runner import ROOT
from write_fastmri import BRAIN_COILS, volume_counts, write_root, write_volume

PAPER = ROOT / "config" / "paper.yaml"
OVERLAY = ROOT / ".test" / "config.yaml"

# What the overlay may change: the network's size, step and iteration counts, batch,
# image and sample counts, and the threads and processes of a 2-core runner. Nothing
# that sets an image size, crop, patch size, padding, task, mask, acceleration, coil
# count, calibration or noise level.
# The training settings a 2-core runner may shrink, wherever a training section is.
TRAINING_COUNTS = (
    "batch_size",
    "steps",
    "ref_steps",
    "warmup_steps",
    "checkpoint_every",
    "processes",
    "threads",
)
ALLOWED = [
    "data.datasets.*.n_eval",
    "data.datasets.*.n_tune",
    "data.datasets.*.max_train_volumes",
    "network.model_channels",
    "network.channel_mult",
    "network.num_blocks",
    "network.channels_per_head",
    *(
        f"{where}training.{key}"
        for where in ("", "priors.*.", "mri.", "padis.ct.", "padis.position_prior.")
        for key in TRAINING_COUNTS
    ),
    "inference.threads",
    "inference.solvers.*.steps",
    "profile.steps",
    "profile.threads",
    "mri.threads",
    "mri.solvers.*.steps",
    "mri.baselines.*.iters",
    "mri.baselines.*.points",
    "solvers.deepinv.*.steps",
    "uncertainty.samples",
    "padis.n_eval",
    "padis.batch_images",
    "padis.ct.n_eval",
    "padis.ct.n_tune",
    "padis.solvers.*.steps",
    "padis.solvers.*.inner",
    "padis.tune.per_decade",
    "generalization.n_train",
]


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def merged_config(overlay: dict | None = None) -> dict:
    """config/paper.yaml with the overlay over it, by Snakemake's own merge."""
    config = yaml.safe_load(PAPER.read_text())
    update_config(config, overlay or yaml.safe_load(OVERLAY.read_text()))
    return config


def changed_keys(config: dict) -> list[str]:
    paper, merged = flatten(yaml.safe_load(PAPER.read_text())), flatten(config)
    return sorted(k for k in paper.keys() | merged.keys() if paper.get(k) != merged.get(k))


def not_allowed(keys: list[str]) -> list[str]:
    return [k for k in keys if not any(fnmatch.fnmatchcase(k, p) for p in ALLOWED)]


def test_overlay_changes_only_network_steps_counts_and_threads():
    changed = changed_keys(merged_config())
    assert changed, "the overlay changes nothing"
    assert not_allowed(changed) == []
    # it shrinks what it changes (never a larger network, more steps or more images)
    paper, merged = flatten(yaml.safe_load(PAPER.read_text())), flatten(merged_config())
    for key in changed:
        if isinstance(paper.get(key), int) and key != "training.processes":
            assert merged[key] <= paper[key], key


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("data.image_size", 64),
        ("data.crop_size", 256),
        ("inference.sizes", ["whole", 64]),
        ("inference.paddings", ["reflect"]),
        ("priors.patch.train_patch", 64),
        ("mri.image_size", 160),
        ("mri.coils", 4),
        ("mri.masks", ["equispaced"]),
        ("mri.accelerations", {4: 0.1}),
        ("mri.sizes", ["whole", 80]),
        ("profile.image_sizes", [320]),
        ("inference.tasks.sr.factor", 4),
        ("uncertainty.sizes", ["whole"]),
    ],
)
def test_the_guard_refuses_a_shape_change(key, value):
    """The guard itself: an overlay that touches a size, mask or coil setting fails it."""
    overlay = copy.deepcopy(yaml.safe_load(OVERLAY.read_text()))
    node = overlay
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    assert not_allowed(changed_keys(merged_config(overlay)))


def test_merged_config_is_valid_and_keeps_the_paper_sections():
    config = merged_config()
    config["fastmri_root"] = "/data/fastmri"
    validate_config(config)
    paper = yaml.safe_load(PAPER.read_text())
    # a partial overlay: both datasets, both priors and every task survive the merge
    assert config["data"]["datasets"].keys() == paper["data"]["datasets"].keys()
    assert config["priors"].keys() == paper["priors"].keys()
    assert (
        config["inference"]["solvers"]["dps"]["tasks"]
        == paper["inference"]["solvers"]["dps"]["tasks"]
    )
    for section in ("mri", "solvers", "uncertainty"):
        assert config[section]["in_all"]


def _reconstruct(kspace: np.ndarray, multicoil: bool) -> np.ndarray:
    crop = center_crop(ifft2c(kspace), 320)
    return rss(crop) if multicoil else np.abs(crop)


@pytest.mark.parametrize(
    ("layout", "coils", "shape"),
    [
        ("singlecoil", 1, (2, 640, 368)),
        ("multicoil", 4, (2, 4, 640, 320)),
        ("multicoil", 16, (1, 16, 640, 320)),
    ],
)
def test_volumes_have_fastmri_shapes_and_consistent_kspace(tmp_path, layout, coils, shape):
    path = tmp_path / "v.h5"
    write_volume(path, layout, shape[0], seed=3, coils=coils)
    multicoil = layout == "multicoil"
    key = "reconstruction_rss" if multicoil else "reconstruction_esc"
    with h5py.File(path, "r") as f:
        assert f["kspace"].shape == shape and f["kspace"].dtype == np.complex64
        assert f[key].shape == (shape[0], 320, 320) and f[key].dtype == np.float32
        recon, kspace = f[key][:], f["kspace"][:]
        assert set(f.attrs) >= {"acquisition", "max", "norm", "patient_id"}
        assert f.attrs["max"] == pytest.approx(float(recon.max()))
    np.testing.assert_allclose(_reconstruct(kspace, multicoil), recon, rtol=1e-4, atol=1e-5)
    # an image, not noise: a body well above the background, smooth inside
    centre, corner = recon[:, 130:190, 130:190], recon[:, :20, :20]
    assert centre.mean() > 10 * corner.mean()
    assert np.abs(np.diff(centre, axis=-1)).mean() < 0.05 * centre.mean()
    # the package's readers take it as a fastMRI volume of its layout
    assert inspect_volume(path, layout).height == 320
    if multicoil:
        assert inspect_mri_volume(path).coils == coils


@pytest.mark.slow
def test_root_holds_the_paper_folders_with_both_coil_counts(tmp_path):
    counts = volume_counts(OVERLAY)
    written = write_root(
        tmp_path, knee_train=1, brain_train=2, knee_slices=1, brain_slices=1, **counts
    )
    paper = yaml.safe_load(PAPER.read_text())["data"]["datasets"]
    overlay = yaml.safe_load(OVERLAY.read_text())["data"]["datasets"]
    for name, ds in paper.items():
        assert len(written[ds["eval_dir"]]) == overlay[name]["n_eval"] + overlay[name]["n_tune"]
        assert written[ds["train_dir"]]
    brain = written["brain_multicoil_train"] + written["brain_multicoil_val"]
    assert {inspect_mri_volume(p).coils for p in brain} == set(BRAIN_COILS)
    # extraction crops the 320 x 320 reconstruction and resizes it to the paper's 256
    out = tmp_path / "knee_eval.h5"
    extract_volumes(
        written["knee_singlecoil_val"],
        "eval",
        out,
        image_size=256,
        crop_size=320,
        layout="singlecoil",
    )
    with h5py.File(out, "r") as f:
        assert f.attrs["n_images"] == len(written["knee_singlecoil_val"])
