"""snakemake generalization: its plan, its config checks and its training subsets."""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pytest
from patchpnp import layout
from patchpnp.data.fastmri import DataError
from patchpnp.data.subset import subset_indices, write_train_subset
from patchpnp.formats import FormatError, append_split, create_split, read_split
from patchpnp.pipeline.config import ConfigError, validate_config
from patchpnp.pipeline.plan import GeneralizationPlan, Plan
from workflow_runner import tiny_demo_config


def _plan(config=None) -> GeneralizationPlan:
    return GeneralizationPlan(Plan(validate_config(config or _with_position())))


def _with_position() -> dict:
    config = tiny_demo_config()
    config["generalization"]["priors"] = ["whole", "patch", "position"]
    return config


def test_plan_trains_the_smaller_sets_and_reuses_the_grid_for_all():
    gen = _plan()
    assert gen.n_trains == ["4", "all"] and gen.domains == ["mni_t1"]
    assert gen.eval_datasets("mni_t1") == ["mni_t1_singlecoil", "mni_flair_singlecoil"]
    # all slices of the grid's own datasets: the grid's priors, trained once
    assert gen.prior_file("mni_t1", "all", "patch") == layout.PRIOR.format(prior="patch")
    assert gen.prior_file("mni_t1", "4", "patch") == layout.GENERALIZATION_PRIOR.format(
        trained_on="mni_t1", n_train="4", prior="patch"
    )
    # PaDIS's position-aware prior: at all, the one snakemake padis trains on the grid's
    # training splits; its patch cells tile as padis's do (4-px tiles, zero margin)
    assert gen.prior_file("mni_t1", "all", "position") == layout.PADIS_PRIOR.format(
        domain="mri", prior="position"
    )
    assert gen.trained_priors() == [
        {"trained_on": "mni_t1", "n_train": "4", "prior": p} for p in ("whole", "patch", "position")
    ]
    assert gen.sizes_of("position") == [("whole", "none"), (4, "zeros")]
    assert gen.sizes_of("patch") == [("whole", "none"), (8, "reflect")]
    assert gen.train_files("mni_t1", "4") == [
        "results/generalization/data/mni_t1_singlecoil/train_n4.h5"
    ]
    assert gen.train_files("mni_t1", "all") == ["results/data/mni_t1_singlecoil/train.h5"]
    # 2 datasets x 3 priors x 1 solver x 1 task x 2 sizes per n_train; at all, the
    # grid priors' in-distribution cells are the grid's own files, the rest run here.
    small, full = gen.metrics_files("mni_t1", "4"), gen.metrics_files("mni_t1", "all")
    assert len(small) == len(full) == 12
    assert "results/generalization/mni_t1/n4/metrics/mni_t1_singlecoil/position/diffpir/" \
        "denoise/p4-zeros.csv" in small  # fmt: skip
    assert all(f.startswith("results/generalization/mni_t1/n4/metrics/") for f in small)
    grid = [f for f in full if f.startswith("results/metrics/")]
    assert len(grid) == 4 and all("/mni_t1_singlecoil/" in f for f in grid)
    assert "results/generalization/mni_t1/nall/metrics/mni_flair_singlecoil/patch/diffpir/" \
        "denoise/p8-reflect.csv" in full  # fmt: skip
    # 3 training volumes of 3 slices, from the config (the demo)
    counts = gen.check_sizes()
    assert counts == {"mni_t1_singlecoil": 9}
    groups = gen.table_groups(counts)
    assert groups.startswith("--group mni_t1 4 4 mni_flair_singlecoil results/generalization/")
    assert "--group mni_t1 all 9 mni_flair_singlecoil results/metrics/" in groups


def test_the_shift_dataset_is_a_demo_folder_of_its_own_contrast():
    plan = Plan(validate_config(tiny_demo_config()))
    folder = plan.demo_folders()["mni_flair_singlecoil_val"]
    assert (folder.eval, folder.train, folder.tune, folder.contrast) == (2, 0, 0, "flair")
    assert folder.parts()[0][2].endswith("--contrast flair")
    # the grid's folders keep their command (no rerun of the grid's volumes)
    assert "--contrast" not in plan.demo_folders()["mni_t1_singlecoil_val"].parts()[0][2]
    assert plan.splits("mni_flair_singlecoil") == ["eval"]
    assert "mni_flair_singlecoil" not in plan.datasets  # in no grid
    assert len(plan.volumes("mni_flair_singlecoil", "eval")) == 2


def test_a_domain_not_on_the_grids_datasets_trains_all_itself():
    config = _with_position()
    ds = config["data"]["datasets"]
    ds["mni_t1_multicoil"] = {**ds["mni_t1_singlecoil"], "layout": "multicoil",
                              "train_dir": "mc_train", "eval_dir": "mc_val"}  # fmt: skip
    gen = _plan(config)
    assert gen.prior_file("mni_t1", "all", "whole") == layout.GENERALIZATION_PRIOR.format(
        trained_on="mni_t1", n_train="all", prior="whole"
    )
    assert not any(gen.reuses_grid_cell("mni_t1", "all", c) for c in gen.cells("mni_t1"))
    assert len(gen.trained_priors()) == 6  # 2 n_train x 3 priors


def _with(**changes) -> dict:
    config = tiny_demo_config()
    spec = config["generalization"]
    for key, value in changes.items():
        spec[key] = value
    return config


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (_with(n_train=[0, "all"]), "'generalization.n_train': 0 training slices"),
        (_with(n_train=[-3]), "'generalization.n_train': -3 training slices"),
        (_with(priors=["whole", "nope"]), "'generalization.priors': ['nope']"),
        (_with(sizes=["whole", 4]), "'generalization.sizes': [4] are not in inference.sizes"),
        (
            _with(
                domains={"mni_t1": {"train": ["mni_t1_singlecoil"], "shift": "mni_t1_singlecoil"}}
            ),
            "'generalization.domains.mni_t1.shift': 'mni_t1_singlecoil' is one of the domain's",
        ),
        (
            _with(domains={"x": {"train": ["nope"], "shift": "mni_flair_singlecoil"}}),
            "'generalization.domains.x.train': 'nope' is not a dataset",
        ),
        (
            _with(domains={"x": {"train": ["mni_t1_singlecoil"], "shift": "nowhere"}}),
            "'generalization.domains.x.shift': 'nowhere' is neither",
        ),
    ],
)
def test_bad_generalization_settings_name_the_key(config, message):
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert message in str(err.value)


def test_an_n_train_beyond_the_training_split_stops_with_the_numbers():
    gen = _plan(_with(n_train=[10, "all"]))
    with pytest.raises(DataError, match=r"'generalization.n_train': 10 slices per dataset, "
                       r"but the training split of 'mni_t1_singlecoil' holds 9"):  # fmt: skip
        gen.check_sizes()


def test_a_shift_split_that_shares_training_volumes_is_refused(tmp_path):
    from fastmri_files import write_folder

    root = tmp_path / "fastmri"
    write_folder(root / "train", 3, "singlecoil", n_slices=6, size=16)
    write_folder(root / "val", 3, "singlecoil", n_slices=3, size=16)
    config = tiny_demo_config()
    config["data"]["source"] = "fastmri"
    config["fastmri_root"] = str(root)
    del config["data"]["demo"]
    spec = config["generalization"]
    # the same volumes under another name: the config cannot tell, the listing can
    (root / "train_again").symlink_to(root / "train")
    spec["shift_datasets"] = {
        "other": {"layout": "singlecoil", "eval_dir": "train_again", "n_eval": 2}
    }
    spec["domains"]["mni_t1"]["shift"] = "other"
    ds = config["data"]["datasets"]["mni_t1_singlecoil"]
    ds.update(train_dir="train", eval_dir="val")
    gen = _plan(config)
    with pytest.raises(DataError, match=r"generalization.domains.mni_t1.shift': 2 of the "):
        gen.check_shift()
    # the same folder by name is a config error
    spec["shift_datasets"]["other"]["eval_dir"] = "train"
    with pytest.raises(ConfigError, match=r"shift_datasets.other.eval_dir': 'train' is data"):
        validate_config(config)
    # fastMRI counts the training slices from the headers, less the edge slices
    assert gen.check_sizes() == {"mni_t1_singlecoil": 3 * (6 - 2)}


# -- training subsets --------------------------------------------------------------------
def test_subsets_are_nested_and_fixed_per_dataset():
    small, large = subset_indices(50, 5, 3, "a"), subset_indices(50, 20, 3, "a")
    assert set(small) <= set(large) and len(set(large)) == 20
    assert np.all(np.diff(large) > 0)
    assert not np.array_equal(subset_indices(50, 20, 3, "b"), large)
    np.testing.assert_array_equal(subset_indices(50, 20, 3, "a"), large)
    with pytest.raises(ValueError, match="dataset 'a': 51 training slices asked for"):
        subset_indices(50, 51, 3, "a")
    with pytest.raises(ValueError, match="expected 1 to 50"):
        subset_indices(50, 0, 3, "a")


def _split(path, n: int, split: str = "train"):
    with h5py.File(path, "w") as f:
        create_split(f, 4, {"split": split, "image_size": 4, "crop_size": 4, "edge_slices": 0,
                            "scale_percentile": 99.5, "n_volumes": 2})  # fmt: skip
        images = np.arange(n * 16, dtype=np.float32).reshape(n, 4, 4)
        append_split(f, images, [f"v{i % 2}.h5" for i in range(n)], np.arange(n), np.ones(n))
    return path


def test_subset_file_holds_the_chosen_slices_and_says_where_from(tmp_path):
    train = _split(tmp_path / "train.h5", 10)
    out = tmp_path / "sub.h5"
    write_train_subset(train, out, n=4, seed=7, dataset="d")
    keep = subset_indices(10, 4, 7, "d")
    sub, full = read_split(out), read_split(train)
    np.testing.assert_array_equal(sub.images, full.images[keep])
    assert sub.names() == [full.names()[i] for i in keep]
    with h5py.File(out) as f:
        assert f.attrs["split"] == "train" and f.attrs["n_images"] == 4
        assert f.attrs["subset_n"] == 4 and f.attrs["subset_of_n_images"] == 10
    with pytest.raises(FormatError, match="cut from a training split, this is split 'eval'"):
        write_train_subset(_split(tmp_path / "eval.h5", 10, "eval"), tmp_path / "x.h5", n=2,
                           seed=7, dataset="d")  # fmt: skip
    assert not (tmp_path / "x.h5").exists()


def test_paper_config_trains_on_one_anatomy_and_shifts_to_the_other(repo_root):
    import yaml

    paper = yaml.safe_load((repo_root / "config" / "paper.yaml").read_text())
    spec = copy.deepcopy(paper["generalization"])
    assert spec["in_all"] and spec["n_train"][-1] == "all"
    assert {d: (v["train"], v["shift"]) for d, v in spec["domains"].items()} == {
        "knee": (["knee"], "brain"),
        "brain": (["brain"], "knee"),
    }


@pytest.mark.slow
def test_tiny_generalization_runs_end_to_end(tiny_generalization):
    """`snakemake generalization` on the tiny demo (the session's extensions run,
    tests/conftest.py): the FLAIR-like shift split, the 4-slice subset and the two priors
    trained on it, every cell (the grid's own at all, in distribution), the table, the
    claims and the figure."""
    import pandas as pd

    work = tiny_generalization
    shift = read_split(work / layout.SPLIT.format(dataset="mni_flair_singlecoil", split="eval"))
    assert len(shift.source) == 2
    with h5py.File(work / layout.DEMO_ROOT / "mni_flair_singlecoil_val" / "file_mni_0000.h5") as f:
        assert str(f.attrs["acquisition"]).endswith("FLAIR")
    subset = work / layout.GENERALIZATION_TRAIN.format(dataset="mni_t1_singlecoil", n_train=4)
    full = read_split(work / layout.SPLIT.format(dataset="mni_t1_singlecoil", split="train"))
    keep = subset_indices(len(full.source), 4, 3, "mni_t1_singlecoil")
    assert read_split(subset).names() == [full.names()[i] for i in keep]
    for prior in ("whole", "patch"):
        trained = work / layout.GENERALIZATION_PRIOR_DIR.format(
            trained_on="mni_t1", n_train=4, prior=prior
        )
        assert (trained / "ema.pt").is_file()
        log = work / layout.LOGS / "generalization" / "train" / "mni_t1" / "n4" / f"{prior}.log"
        assert "on 4 images from 1 file(s)" in log.read_text()
    assert not (work / "results/generalization/priors/mni_t1/nall").exists()
    table = pd.read_csv(work / f"{layout.GENERALIZATION_TABLE}.csv", dtype={"n_train": str})
    assert list(table.columns[:5]) == ["dataset", "domain", "trained_on", "prior", "n_train"]
    # 2 n_train x 2 datasets x 2 priors x (whole, p8)
    assert len(table) == 16 and set(table["n_train"]) == {"4", "all"}
    assert set(table.loc[table["dataset"] == "mni_flair_singlecoil", "domain"]) == {"shifted"}
    assert table["n_images"].eq(2).all() and (table["psnr_mean"] > 5).all()
    # the all / in-distribution rows are the grid's cells
    grid = pd.read_csv(
        work / "results/metrics/mni_t1_singlecoil/patch/diffpir/denoise/p8-reflect.csv"
    )
    row = table[(table["n_train"] == "all") & (table["dataset"] == "mni_t1_singlecoil")
                & (table["prior"] == "patch") & (table["size"] == "p8")]  # fmt: skip
    assert row["psnr_mean"].item() == pytest.approx(grid["psnr"].mean())
    claims = pd.read_csv(work / f"{layout.GENERALIZATION_CLAIMS}.csv", dtype={"n_train": str})
    assert {"e_data_efficiency", "f_shift"} <= set(claims["claim"])
    assert claims["verdict"].isin(["reproduced", "contradicted", "inconclusive"]).all()
    for ext in ("png", "pdf"):
        assert (work / f"{layout.GENERALIZATION_FIGURE}.{ext}").stat().st_size > 1000


def test_an_unreadable_training_volume_is_left_to_its_extraction_job(tmp_path):
    """A corrupt training volume does not stop every target at parse time (its shard's job
    reports it); the table, which needs the count, names it."""
    from fastmri_files import write_folder

    root = tmp_path / "fastmri"
    write_folder(root / "train", 3, "singlecoil", n_slices=6, size=16)
    write_folder(root / "val", 3, "singlecoil", n_slices=3, size=16)
    (root / "train" / "file_zz_corrupt.h5").write_bytes(b"not HDF5")
    config = tiny_demo_config()
    config["data"]["source"] = "fastmri"
    config["fastmri_root"] = str(root)
    del config["data"]["demo"]
    config["data"]["datasets"]["mni_t1_singlecoil"].update(train_dir="train", eval_dir="val")
    config["generalization"]["shift_datasets"] = {}
    config["generalization"]["domains"] = {
        "t1": {"train": ["mni_t1_singlecoil"], "shift": "mni_t1_singlecoil_other"}
    }
    config["data"]["datasets"]["mni_t1_singlecoil_other"] = {
        "layout": "singlecoil", "eval_dir": "val", "n_eval": 2, "n_tune": 0
    }  # fmt: skip
    gen = _plan(config)
    counts = gen.check_sizes()
    assert counts == {} and "file_zz_corrupt.h5" in gen.unreadable["mni_t1_singlecoil"]
    with pytest.raises(DataError, match=r"training split of 'mni_t1_singlecoil': .*corrupt"):
        gen.table_groups(counts)
