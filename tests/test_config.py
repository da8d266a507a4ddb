"""Config validation: both shipped configs pass; every kind of mistake names its key."""

import copy

import pytest
import yaml
from patchpnp.layout import size_tag
from patchpnp.pipeline.config import ConfigError, load_config, validate_config
from patchpnp.pipeline.plan import Plan


@pytest.fixture
def demo_config(repo_root):
    return yaml.safe_load((repo_root / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_pass_the_schema(repo_root, name):
    config = yaml.safe_load((repo_root / "config" / name).read_text())
    if config["data"]["source"] == "fastmri":
        config["fastmri_root"] = "/data/fastmri"
    validate_config(config)


def test_paper_config_is_the_papers_setup(repo_root):
    cfg = yaml.safe_load((repo_root / "config" / "paper.yaml").read_text())["data"]
    assert cfg["image_size"] == 256 and cfg["crop_size"] == 320
    assert cfg["datasets"]["knee"]["n_eval"] == 62 and cfg["datasets"]["brain"]["n_eval"] == 200


def _set(config, dotted, value):
    node = config
    *parents, last = dotted.split(".")
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("data.imge_size", 64, r"config key 'data': unknown key\(s\) \['imge_size'\]"),
        ("data.image_size", "64", r"config key 'data.image_size': '64' is not of type 'integer'"),
        ("data.image_size", 8, r"config key 'data.image_size': 8 is less than the minimum of 16"),
        (
            "data.source",
            "dicom",
            r"config key 'data.source': 'dicom' is not one of \['demo', 'fastmri'\]",
        ),
        ("data.scale_percentile", 101, r"'data.scale_percentile': 101 is greater than the maximum"),
        (
            "data.datasets.mni_t1_singlecoil.layout",
            "triplecoil",
            r"'data.datasets.mni_t1_singlecoil.layout'",
        ),
        (
            "data.datasets.mni_t1_singlecoil.n_eval",
            0,
            r"'data.datasets.mni_t1_singlecoil.n_eval': 0 is less",
        ),
        ("data.datasets.mni_t1_singlecoil.n_evals", 3, r"unknown key\(s\) \['n_evals'\]"),
        (
            "data.datasets.mni_t1_singlecoil.eval_dir",
            KeyError,
            r"'eval_dir' is a required property",
        ),
        ("data.demo.coils", 1.5, r"'data.demo.coils': 1.5 is not of type 'integer'"),
        (
            "data.datasets.Knee",
            {"layout": "any", "eval_dir": "x", "n_eval": 1, "n_tune": 0},
            r"name 'Knee' is not allowed",
        ),
        ("seed", -1, r"config key 'seed': -1 is less than the minimum of 0"),
        ("data.crop_size", 32, r"'data.crop_size': 32 is smaller than data.image_size 64"),
        (
            "data.demo.recon_size",
            64,
            r"'data.demo.recon_size': 64 is smaller than data.crop_size 80",
        ),
        ("data.datasets.mni_t1_singlecoil.layout", "any", r"use singlecoil or multicoil"),
        ("data.datasets.mni_t1_multicoil.eval_dir", "mni_t1_singlecoil_val", r"already used by"),
        ("data.source", "fastmri", r"'fastmri_root': required when data.source is 'fastmri'"),
        ("profile.prior", "padis", r"'profile.prior': 'padis' is not a prior"),
        ("profile.solvers", ["ddrm"], r"'profile.solvers.0': 'ddrm' is not one of"),
        ("profile.sizes", [128, "whole"], r"'profile.sizes': patch 128 exceeds"),
        ("profile.sweep_patch", 512, r"'profile.sweep_patch': 512 exceeds"),
        ("profile.steps", 0, r"'profile.steps': 0 is less than the minimum of 1"),
        ("figures.solver", "ddrm", r"'figures.solver': 'ddrm' is not a solver"),
        ("figures.dataset", "knee", r"'figures.dataset': 'knee' is not a dataset"),
        ("figures.index", 99, r"'figures.index': slice 99 is not among the 12"),
        ("figures", KeyError, r"'figures' is a required property"),
        ("metrics.lpips", "maybe", r"'metrics.lpips': 'maybe' is not one of"),
        ("metrics.lpips_source", "/shared/alexnet.pth", r"'metrics.lpips_source': .* not an"),
        ("solvers.ours", ["ddrm"], r"'solvers.ours': 'ddrm' is not in inference.solvers"),
        ("solvers.sizes", ["whole", 8], r"'solvers.sizes': 8 is not in inference.sizes"),
        ("solvers.sizes", [32, 16], r"'solvers.sizes': needs 'whole'"),
        ("solvers.priors", ["padis"], r"'solvers.priors': 'padis' is not a key of priors"),
        (
            "solvers.deepinv.dinv_ddrm",
            {"steps": 2, "tasks": {}},
            r"'solvers.deepinv.dinv_ddrm': not a deepinv solver",
        ),
        ("solvers.deepinv.dinv_dps.tasks.sr", {"zeta": 1.0}, r"\['zeta'\] do not apply"),
        ("solvers.deepinv.dinv_dps.tasks.sr.weight", 0, r"less than or equal to the minimum"),
        ("resolution.n_eval", 0, r"'resolution.n_eval': 0 is less than the minimum of 1"),
        ("resolution.bars.cell_db", 0, r"'resolution.bars.cell_db': 0 is less than or equal"),
        ("uncertainty.samples", 1, r"'uncertainty.samples': 1 is less than the minimum of 2"),
        ("uncertainty.solvers", ["ddrm"], r"'ddrm' is in neither inference.solvers"),
        ("uncertainty.figure.solver", "dinv_dps", r"'uncertainty.figure.solver': 'dinv_dps'"),
    ],
)
def test_each_mistake_names_its_key(demo_config, key, value, message):
    config = copy.deepcopy(demo_config)
    _set(config, key, value)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_load_config_reports_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="does not hold a mapping"):
        load_config(bad)


def test_plan_shards_and_splits(demo_config):
    demo_config["data"]["volumes_per_shard"] = 10
    plan = Plan(demo_config)
    train = plan.volumes("mni_t1_singlecoil", "train")
    assert len(train) == demo_config["data"]["demo"]["train_volumes"]
    assert plan.n_shards("mni_t1_singlecoil", "train") == -(-len(train) // 10)
    assert sum(
        len(plan.shard("mni_t1_singlecoil", "train", i))
        for i in range(plan.n_shards("mni_t1_singlecoil", "train"))
    ) == len(train)
    ev, tune = plan.volumes("mni_t1_singlecoil", "eval"), plan.volumes("mni_t1_singlecoil", "tune")
    n = demo_config["data"]["datasets"]["mni_t1_singlecoil"]
    assert (len(ev), len(tune)) == (n["n_eval"], n["n_tune"]) and not set(ev) & set(tune)
    assert plan.splits("mni_t1_singlecoil") == ["train", "eval", "tune"]


def test_plan_runs_the_three_sizes_and_the_padding_ablation_where_configured(demo_config):
    cells = Plan(demo_config).cells()
    per_size = {}
    for c in cells:
        per_size.setdefault((c.solver, size_tag(c.size)), set()).add(c.padding)
    # The paper's whole / N/2 / N/4 for every solver; zeros only for DiffPIR at N/2.
    assert per_size == {
        ("diffpir", "whole"): {"none"},
        ("diffpir", "p32"): {"reflect", "zeros"},
        ("diffpir", "p16"): {"reflect"},
        ("dps", "whole"): {"none"},
        ("dps", "p32"): {"reflect"},
        ("dps", "p16"): {"reflect"},
    }
    assert len(cells) == 2 * 2 * 2 * (4 + 3)  # datasets x priors x tasks x (diffpir + dps)
    config = copy.deepcopy(demo_config)
    del config["inference"]["padding_sizes"]
    zeros = {size_tag(c.size) for c in Plan(config).cells() if c.padding == "zeros"}
    assert zeros == {"p16", "p32"}
    config["inference"]["padding_sizes"] = [24]
    with pytest.raises(ConfigError, match="padding_sizes.*24"):
        validate_config(config)


def test_plan_names_the_figures_inputs(demo_config):
    plan = Plan(demo_config)
    fig = plan.figure_inputs()
    assert fig["padding"]["zeros"].endswith("/patch/diffpir/denoise/p32-zeros.h5")
    assert fig["padding"]["reflect"].endswith("/patch/diffpir/denoise/p32-reflect.h5")
    assert [r["task"] for r in fig["rows"]] == ["denoise", "sr"]
    labels = [label for label, _ in fig["rows"][1]["panels"]]
    assert labels == ["whole", "patch 16 (reflect)"]
    assert fig["rows"][1]["measurement"].endswith("baseline/sr.h5")
    # every file a figure reads is one the grid writes
    grid = set(plan.cell_files("infer"))
    assert {p for r in fig["rows"] for _, p in r["panels"]} <= grid
    assert "results/figures/fig1_padding.png" in plan.figure_files()

    config = copy.deepcopy(demo_config)
    config["inference"]["paddings"] = ["reflect"]
    assert Plan(config).figure_inputs()["padding"] is None
    assert "results/figures/fig1_padding.png" not in Plan(config).figure_files()


@pytest.mark.parametrize(
    "args, status",
    [
        (["check-config", "config/config.yaml"], 0),
        # A bad metrics path: the error is caught through the torch-free base class.
        (
            [
                "tables",
                "results/metrics/nowhere.csv",
                "--out-dir",
                "{tmp}",
                "--image-shape",
                "8",
                "8",
            ],
            2,
        ),
    ],
)
def test_torch_free_commands_import_no_torch(repo_root, tmp_path, args, status):
    """check-config and tables run on the submitting node: they, and catching their
    errors (patchpnp.errors.PatchpnpError), must not pay for importing torch."""
    import subprocess
    import sys

    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = (
        "import sys\n"
        "from patchpnp.cli import main\n"
        f"status = main({argv!r})\n"
        "print(status, 'torch' in sys.modules)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True
    )
    assert res.stdout.splitlines()[-1].split() == [str(status), "False"], res.stdout + res.stderr


def test_planning_the_workflow_imports_no_torch(repo_root):
    """Every Snakemake start (a dry run, each cluster job's) imports what the Snakefile
    imports and digests every command's code: none of it may import torch, which would
    cost each start seconds."""
    import re
    import subprocess
    import sys

    rules = [repo_root / "Snakefile", *sorted((repo_root / "workflow" / "rules").glob("*.smk"))]
    found = (re.findall(r"^from (patchpnp\S*) import", p.read_text(), re.M) for p in rules)
    modules = sorted({m for names in found for m in names})
    assert "patchpnp.prior.spec" in modules and "patchpnp.pipeline.provenance" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "from patchpnp.commands import COMMANDS\n"
        "from patchpnp.pipeline.provenance import command_code\n"
        "for command in COMMANDS:\n"
        "    command_code(command)\n"
        "print('torch' in sys.modules)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True
    )
    assert res.stdout.split() == ["False"], res.stdout + res.stderr


def test_solvers_and_uncertainty_plans(demo_config):
    """snakemake solvers reuses our grid's cells and adds deepinv's; uncertainty's cells."""
    from patchpnp.pipeline.plan import SolversPlan, UncertaintyPlan

    plan = Plan(demo_config)
    solvers = SolversPlan(plan)
    grid = set(plan.cell_files("metrics"))
    files = solvers.metrics_files()
    ours = [f for f in files if f.startswith("results/metrics/")]
    assert len(ours) == 2 * 2 * 2 * 2 * 3 and set(ours) <= grid  # reused, never rerun
    assert len(solvers.deepinv_metrics_files()) == 2 * 2 * 3 * 2 * 3
    assert all(f.startswith("results/solvers/metrics/") for f in solvers.deepinv_metrics_files())
    assert len(solvers.tune_files()) == 2 * 3 * 2
    params = solvers.solver_params("dinv_dps", "sr", "patch")
    assert params == {"steps": 20, "weight": 1000.0, "sigma_start": 0.2}
    assert solvers.solver_params("dps", "sr", "patch") == plan.solver_params("dps", "sr", "patch")
    unc = UncertaintyPlan(plan, solvers)
    assert len(unc.cells()) == 2 * 1 * 2 * 2 * 2
    assert unc.tuned_file("patch", "dps", "sr") == []
    assert unc.tuned_file("patch", "dinv_dps", "sr") == [
        "results/solvers/tune/patch/dinv_dps/sr.csv"
    ]
    assert [c.size for c in unc.figure_cells("denoise")] == ["whole", 32]
