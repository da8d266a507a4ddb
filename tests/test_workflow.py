"""The Snakemake workflow: dry runs of both configs, early errors, and a tiny real run."""

import pytest
import yaml
from workflow_runner import ROOT, snakemake, tiny_demo_config, write_config

pytestmark = pytest.mark.slow


def test_demo_config_dry_run(tmp_path):
    res = snakemake(tmp_path, "-n", configfile=ROOT / "config" / "config.yaml")
    assert res.returncode == 0, res.stderr
    for rule in ("demo_volumes_mni_t1_singlecoil_train", "extract_shard", "merge_split", "all"):
        assert rule in res.stdout
    # the extra evaluation volumes are snakemake resolution's alone
    assert "_val_more" not in res.stdout and "resolution_cell" not in res.stdout
    assert not (tmp_path / "results").exists()


def test_resolution_dry_run_reruns_the_grid_on_more_slices(tmp_path):
    """snakemake resolution: the extra volumes (after the tuning ones, a job of their own),
    the resolution split, the grid's 56 cells and 4 baselines again, and its tables with
    the bars; the grid's own volumes, cells and tables are not part of it."""
    res = snakemake(tmp_path, "-n", "-p", "resolution", configfile=ROOT / "config" / "config.yaml")
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    assert counts["resolution_cell"] == 56 and counts["resolution_baseline"] == 4
    assert counts["demo_volumes_mni_t1_singlecoil_val_more"] == 1
    assert counts["resolution_tables"] == 1
    assert "infer_cell" not in counts and "tables" not in counts
    assert "--more-eval 148 --first-file 16" in res.stdout
    assert "results/data/mni_t1_multicoil/resolution.h5" in res.stdout
    assert "--batch-images 40" in res.stdout and "--bars 0.15 0.05" in res.stdout
    assert "results/resolution/tables/resolution.md" in res.stdout


def test_seeds_dry_run_retrains_the_priors_and_reruns_the_grid(tmp_path):
    """snakemake seeds: both priors again under training seed + 1, the grid's 56 cells on
    them (the baselines are the grid's), the run's tables and the cross-run table."""
    res = snakemake(tmp_path, "-n", "-p", "seeds", configfile=ROOT / "config" / "config.yaml")
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    assert counts["seeds_train_prior"] == 2 and counts["seeds_cell"] == 56
    assert counts["seeds_tables"] == 1 and counts["seeds_table"] == 1
    assert counts["infer_baseline"] == 4 and "seeds_baseline" not in counts
    seed = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["seed"]
    assert f'"seed": {seed + 1}' in res.stdout  # the training settings of run 1
    assert f"--training-seeds {seed} {seed + 1}" in res.stdout
    assert "results/seeds/run1/priors/whole/ema.pt" in res.stdout
    assert "results/tables/seeds_claims.csv" in res.stdout


def test_tables_judge_memory_on_the_paper_scale_profile_once_it_exists(tmp_path):
    """The tables take results/profile/paper_scale.csv as an input when it is there."""
    res = snakemake(tmp_path, "-n", "-p", "tables", configfile=ROOT / "config" / "config.yaml")
    assert res.returncode == 0, res.stderr
    assert "--paper-scale" not in res.stdout and "--plateau-fraction 0.1" in res.stdout
    profile = tmp_path / "results" / "profile" / "paper_scale.csv"
    profile.parent.mkdir(parents=True)
    profile.write_text("solver\n")
    res = snakemake(tmp_path, "-n", "-p", "tables", configfile=ROOT / "config" / "config.yaml")
    assert res.returncode == 0, res.stderr
    assert "--paper-scale results/profile/paper_scale.csv" in res.stdout


def test_paper_profile_needs_no_data_and_no_training(tmp_path):
    """snakemake paper_profile on the demo config: the profile and its figure, from
    config/paper.yaml's network, with no data extraction and no prior."""
    res = snakemake(tmp_path, "-n", "paper_profile", configfile=ROOT / "config" / "config.yaml")
    assert res.returncode == 0, res.stderr
    jobs = res.stdout
    for rule in ("paper_scale_profile", "figure_paper_scale", "paper_profile"):
        assert rule in jobs
    for rule in ("demo_volumes", "extract_shard", "train_prior", "calibrate_memory"):
        assert rule not in jobs
    assert str(ROOT / "config" / "paper.yaml") in jobs


def test_longer_priors_overlay_merges_into_the_demo(tmp_path):
    """config/longer-priors.yaml after the demo config changes only what it names:
    the training volumes and the training schedule, for both priors."""
    config = ROOT / "config"
    res = snakemake(
        tmp_path,
        "priors",
        "-n",
        "-p",
        "--configfile",
        str(config / "config.yaml"),
        str(config / "longer-priors.yaml"),
    )
    assert res.returncode == 0, res.stderr
    overlay = yaml.safe_load((config / "longer-priors.yaml").read_text())
    volumes = f"--train {overlay['data']['demo']['train_volumes']} "
    demo_train = [line for line in res.stdout.splitlines() if "patchpnp demo" in line]
    assert demo_train and all((volumes in c) == ("_train " in c) for c in demo_train)
    overlay = overlay["training"]
    demo = yaml.safe_load((config / "config.yaml").read_text())
    trained = [line for line in res.stdout.splitlines() if "patchpnp train" in line]
    assert len(trained) == len(demo["priors"])
    for command in trained:
        settings = yaml.safe_load(command.split("--settings ", 1)[1].split("' --threads")[0][1:])
        assert {k: settings["training"][k] for k in overlay} == overlay
        for key in ("lr_ref", "ema_sigma_rel", "precision"):
            assert settings["training"][key] == demo["training"][key]
    assert not (tmp_path / "results").exists()


def test_paper_config_dry_run(tmp_path, paper_data):
    work = tmp_path / "work"
    work.mkdir()
    res = snakemake(
        work,
        "-n",
        "--config",
        *paper_data,
        configfile=ROOT / "config" / "paper.yaml",
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "mni_t1" not in out  # the demo's datasets are not merged into the paper's
    assert "results/data/knee/eval.h5" in out and "results/data/brain/tune.h5" in out
    # 62 knee and 200 brain evaluation volumes at 50 per shard: 2 + 4 shards.
    assert "results/data/knee/shards/eval_0001.h5" in out
    assert "results/data/brain/shards/eval_0003.h5" in out
    assert "results/data/brain/shards/eval_0004.h5" not in out
    # The paper's full grid: 2 datasets x 2 priors x 2 solvers x 2 tasks x
    # (whole + 2 patch sizes x 2 paddings) = 80 cells, one baseline per dataset and task.
    counts = job_counts(out)
    assert counts["infer_cell"] == 80 and counts["infer_baseline"] == 4
    assert counts["extract_shard"] == 10 and counts["merge_split"] == 6
    assert counts["train_prior"] == 2 and counts["profile"] == 2
    # mri.in_all: brain's k-space, 2 masks x 2 accelerations x 2 priors x 2 solvers x
    # 3 sizes = 48 diffusion cells, 3 classical methods per acquisition, 2 of them tuned.
    assert counts["mri_cell"] == 48 and counts["mri_classical"] == 12
    assert counts["mri_tune_baseline"] == 8 and counts["mri_train_prior"] == 2
    assert counts["mri_merge_split"] == 3 and counts["mri_table"] == 1
    # solvers.in_all: 3 deepinv solvers x 2 priors x 2 tasks tuned; their cells over
    # 2 datasets x 2 priors x 2 tasks x 3 sizes; our cells are the grid's (counted above).
    assert counts["solvers_tune"] == 12 and counts["solvers_cell"] == 72
    # uncertainty.in_all: 2 datasets x 2 priors x 2 solvers x 2 tasks x 2 sizes.
    assert counts["uncertainty_cell"] == 32 and counts["figure_uncertainty"] == 2
    # resolution.in_all is false: the grid's 62 and 200 slices are the paper's own
    assert "resolution_cell" not in counts
    # padis.in_all: 3 priors x 4 solvers x 4 tasks x 2 sizes on knee slices and the DICOM
    # CT (train, eval, tune splits); the position-aware prior on each domain, the whole
    # and patch priors on CT (knee's are the grid's); each (prior, solver, task) tuned.
    assert counts["padis_cell"] == 96 and counts["padis_tune_solver"] == 48
    assert counts["padis_ct_split"] == 3 and counts["padis_train_prior"] == 4
    assert counts["padis_baseline"] == 4 and counts["padis_table"] == 1
    # generalization.in_all: knee- and brain-trained priors (neither is the grid's, which
    # trains on both) at 3 n_train, 3 priors each (the third PaDIS's); cells on both
    # anatomies x 2 solvers x 2 tasks x 2 sizes; the subsets of 200 and 2000 slices.
    assert counts["generalization_train_prior"] == 18 and counts["generalization_subset"] == 4
    assert counts["generalization_cell"] == 288 and counts["generalization_table"] == 1


def test_ci_overlay_merges_into_the_paper_config(tmp_path, paper_data):
    """`--configfile config/paper.yaml .test/config.yaml` (.test/run-paper.sh): the overlay
    merges key by key into the paper config rather than replacing it, so `all` plans the
    paper's jobs, on the paper's sizes, with the overlay's network and steps."""
    paper = ROOT / "config" / "paper.yaml"
    runs = {}
    for name, files in (("paper", [paper]), ("ci", [paper, ROOT / ".test" / "config.yaml"])):
        work = tmp_path / name
        work.mkdir()
        res = snakemake(
            work,
            "-n",
            "-p",
            "--config",
            *paper_data,
            "--configfile",
            *map(str, files),
        )
        assert res.returncode == 0, res.stderr
        runs[name] = res.stdout
    counts = {name: job_counts(out) for name, out in runs.items()}
    # every rule of the paper's all, as often; only the shards follow the volume counts,
    # and generalization's jobs its n_train list (the overlay keeps one small n beside all)
    sharded = {"extract_shard", "merge_split", "mri_extract_shard", "mri_merge_split"}
    sharded |= {"generalization_subset", "generalization_train_prior", "generalization_cell"}
    assert counts["ci"].keys() == counts["paper"].keys()
    assert {k: v for k, v in counts["ci"].items() if k not in sharded} == {
        k: v for k, v in counts["paper"].items() if k not in sharded
    }
    out = runs["ci"]
    overlay = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    assert f'"model_channels": {overlay["network"]["model_channels"]}' in out
    assert '"image_size": 256' in out and '"train_patch": 128' in out
    assert "--image-size 256 --crop-size 320" in out
    assert "--image-size 320 --calib-width 24 --edge-slices 5" in out and "--coils 8" in out
    assert f'"steps": {overlay["inference"]["solvers"]["dps"]["steps"]}' in out
    assert "--image-sizes 320 512 768 1024" in out
    assert "--ct-source dicom --folder" in out and "--image-size 256 --images 3" in out
    # generalization's position-aware prior tiles as padis does: 64-px tiles, zero margin,
    # padis.patch_batch (all tiles at once, so no calibration); the others as the grid
    jobs = [line for line in out.splitlines() if "PATCHPNP_RULE=generalization_cell" in line]
    position = [j for j in jobs if "/position/" in j and "--size 64 " in j]
    assert position and all("--padding zeros" in j for j in position)
    assert not any("--patch-batch" in j or "--calibration" in j for j in position)
    patch = [j for j in jobs if "/patch/" in j and "--size 128 " in j]
    assert patch and all("--patch-batch auto" in j and "--calibration" in j for j in patch)


def job_counts(dry_run_output: str) -> dict[str, int]:
    table = dry_run_output.split("Job stats:")[1].split("total")[0]
    rows = (line.split() for line in table.splitlines()[3:])
    return {row[0]: int(row[1]) for row in rows if len(row) == 2}


@pytest.mark.parametrize("account", [None, "my_lab"])
def test_slurm_profile_resources(tmp_path, paper_data, account):
    """GPU jobs ask for a GPU per process and CPUs per GPU; memory and run time come
    from the profile; the account comes from the environment when it is set."""
    res = snakemake(
        tmp_path,
        "-n",
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--config",
        *paper_data,
        configfile=ROOT / "config" / "paper.yaml",
        extra_env={"PATCHPNP_SLURM_ACCOUNT": account or ""},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    resources = {}
    rule = None
    for line in res.stdout.splitlines():
        if line.startswith("rule "):
            rule = line[5:-1]
        elif line.startswith("    resources: ") and rule not in resources:
            resources[rule] = dict(
                item.split("=", 1) for item in line[len("    resources: ") :].split(", ")
            )
    train, cell, shard = (
        resources["train_prior"],
        resources["infer_cell"],
        resources["extract_shard"],
    )
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    assert train["gpu"] == str(paper["training"]["processes"]) and train["cpus_per_gpu"] == "8"
    assert cell["gpu"] == "1" and cell["mem_mb"] == "32000" and cell["runtime"] == "240"
    assert "gpu" not in shard and shard["mem_mb"] == "8000"
    assert cell.get("slurm_account") == account
    # the derived rules of the targets that retrain and rerun ask what the grid's ask
    assert {k: resources["generalization_train_prior"][k] for k in ("cpus_per_gpu", "mem_mb")} \
        == {k: train[k] for k in ("cpus_per_gpu", "mem_mb")}  # fmt: skip
    assert resources["generalization_cell"]["mem_mb"] == "32000"
    assert resources["padis_cell"]["runtime"] == "240"


def test_paper_config_without_fastmri_location_stops_early(tmp_path):
    res = snakemake(tmp_path, "-n", configfile=ROOT / "config" / "paper.yaml")
    assert res.returncode != 0
    assert "'fastmri_root': required when data.source is 'fastmri'" in res.stdout + res.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        # a folder the grid reads is gone
        ("all", "brain_multicoil_val' does not exist"),
        # knee_singlecoil_val holds 72 volumes: the grid's 62 and the 10 tuning ones
        # fit, the 189 of resolution.n_eval do not
        ("resolution", "config key 'resolution.n_eval' (189)"),
    ],
)
def test_missing_fastmri_volumes_stop_before_any_job(
    tmp_path, paper_fastmri, paper_ct, target, message
):
    import shutil

    root = paper_fastmri  # the session's, read only: a folder goes from a copy
    if target == "all":
        root = shutil.copytree(paper_fastmri, tmp_path / "fastmri")
        shutil.rmtree(root / "brain_multicoil_val")
    work = tmp_path / "work"
    work.mkdir()
    res = snakemake(
        work,
        "--cores",
        "1",
        target,
        "--config",
        f"fastmri_root={root}",
        f"padis={{ct: {{root: {paper_ct}}}}}",
        configfile=ROOT / "config" / "paper.yaml",
    )
    assert res.returncode != 0
    assert message in res.stdout + res.stderr
    assert not (work / "results").exists()


def test_bad_config_value_stops_before_any_job(tmp_path):
    config = tiny_demo_config()
    config["data"]["image_size"] = 8
    config["data"]["datasets"]["mni_t1_singlecoil"]["n_tune"] = "two"
    res = snakemake(tmp_path, "--cores", "1", configfile=write_config(tmp_path, config))
    assert res.returncode != 0
    assert (
        "config key 'data.image_size': 8 is less than the minimum of 16" in res.stdout + res.stderr
    )
    assert (
        "config key 'data.datasets.mni_t1_singlecoil.n_tune': 'two' is not of type"
        in res.stdout + res.stderr
    )
    assert not (tmp_path / "results").exists()


def test_lpips_required_without_the_weights_stops_before_any_job(tmp_path):
    """metrics.lpips: required, offline, nothing cached: the workflow stops while it
    plans, naming the key and the fix; no job runs."""
    config = tiny_demo_config()
    config["metrics"]["lpips"] = "required"
    res = snakemake(
        tmp_path,
        "--cores",
        "1",
        configfile=write_config(tmp_path, config),
        extra_env={"TORCH_HOME": str(tmp_path / "torch")},
    )
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "config key 'metrics.lpips' is 'required'" in out and "curl -fL" in out, out
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


# Snakemake in the repository folder: one worker runs every such test (pytest-xdist)
@pytest.mark.xdist_group("repository_folder")
def test_lint_is_clean():
    res = snakemake(ROOT, "--lint", configfile=ROOT / "config" / "config.yaml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Lints for" not in res.stdout + res.stderr


def test_config_readme_documents_every_key(repo_root):
    """config/README.md names every key of the schema."""
    schema = yaml.safe_load((repo_root / "workflow" / "schemas" / "config.schema.yaml").read_text())
    doc = (repo_root / "config" / "README.md").read_text()

    # Override sections repeat keys documented once in their own table.
    repeats = ("Overrides", "Parameters per task", "Per-prior overrides")

    def keys(node, prefix=""):
        for name, sub in node.get("properties", {}).items():
            yield prefix + name
            if not sub.get("description", "").startswith(repeats):
                yield from keys(sub, prefix + name + ".")
        if isinstance(node.get("additionalProperties"), dict):
            yield from keys(node["additionalProperties"], prefix + "<name>.")

    missing = [k for k in keys(schema) if f"`{k}`" not in doc]
    assert not missing, f"undocumented config keys: {missing}"


def test_tiny_mri_runs_end_to_end(tiny_mri):
    """`snakemake mri` on the tiny demo: extraction with ESPIRiT maps, both priors on
    complex images, the tuned classical baselines, the diffusion grid, table and figure.
    The run (one prior, one solver; it succeeded) is the session's (tests/conftest.py)."""
    import pandas as pd

    work = tiny_mri
    table = pd.read_csv(work / "results/tables/mri.csv", dtype={"size": str})
    assert set(table["method"]) == {"zero_filled", "sense", "cs_wavelet", "diffusion"}
    diffusion = table[table["method"] == "diffusion"]
    assert len(diffusion) == 2  # whole and 8 px patches
    assert diffusion.loc[diffusion["size"] == "8", "dpsnr_vs_whole"].notna().all()
    assert (work / "results/figures/mri.png").stat().st_size > 0
    assert "## Checks" in (work / "results/tables/mri.md").read_text()


def test_tiny_solvers_and_uncertainty_run_end_to_end(tiny_solvers_uncertainty_resolution):
    """`snakemake solvers uncertainty resolution` on the tiny demo: a deepinv solver's
    weight tuned and its cells beside our grid's, the table with claim (b) per solver, and
    K = 2 posterior samples whole and through 8 px tiles with their table and figure. The
    run (it succeeded) is the session's, on a copy of the finished tiny demo: data,
    priors and grid built (tests/conftest.py)."""
    import pandas as pd

    work = tiny_solvers_uncertainty_resolution
    tables = work / "results/tables"
    table = pd.read_csv(tables / "solvers.csv", dtype={"size": str})
    assert set(table["solver"]) == {"diffpir", "dinv_ilvr"}
    assert len(table) == 4 and table.loc[table["size"] == "p8", "dpsnr_lo"].notna().all()
    assert table.loc[table["solver"] == "dinv_ilvr", "tuned"].str.startswith("weight=").all()
    claims = pd.read_csv(tables / "solvers_claims.csv")
    pooled = claims[claims["dataset"] == "all"]
    assert list(pooled["solver"]) == ["diffpir", "dinv_ilvr", "all"]
    unc = pd.read_csv(tables / "uncertainty.csv", dtype={"size": str})
    assert len(unc) == 2 and (unc["samples"] == 2).all()
    assert unc["coverage_2sd"].between(0, 1).all() and (unc["sd_mean"] > 0).all()
    assert unc.loc[unc["size"] == "p8", "sd_ratio_vs_whole"].notna().all()
    assert (work / "results/figures/uncertainty_denoise.png").stat().st_size > 0
    # snakemake resolution: the grid again on the 2 evaluation slices and 2 more
    res_tables = work / "results/resolution/tables"
    ext = pd.read_csv(res_tables / "extended.csv", dtype={"size": str})
    assert len(ext) == 11 and (ext["n_images"] == 4).all()
    check = pd.read_csv(res_tables / "resolution.csv")
    assert list(check["check"]) == ["cell"] * 4 + ["pooled"] * 4
    assert check["holds"].dtype == bool
    cell = "mni_t1_singlecoil/patch/diffpir/denoise/p8-reflect.csv"
    grid = pd.read_csv(work / "results/metrics" / cell)
    more = pd.read_csv(work / "results/resolution/metrics" / cell)
    # an image's result depends on its own keyed streams alone: the grid's 2 slices agree
    assert list(more["image"][:2]) == list(grid["image"])
    assert more["psnr"][:2].to_numpy() == pytest.approx(grid["psnr"].to_numpy(), abs=1e-4)


def test_paper_config_without_ct_location_stops_early(tmp_path, paper_fastmri):
    """padis is part of the paper's all: without padis.ct.root it stops before any job,
    saying how to give the folder or leave PaDIS out."""
    res = snakemake(
        tmp_path,
        "--cores",
        "1",
        "--config",
        f"fastmri_root={paper_fastmri}",
        configfile=ROOT / "config" / "paper.yaml",
    )
    assert res.returncode != 0
    message = res.stdout + res.stderr
    assert "config key 'padis.ct.root'" in message and "padis.in_all: false" in message
    assert not (tmp_path / "results").exists()
