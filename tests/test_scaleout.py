"""Scale-out and robustness on the smallest config: a workflow killed outright and
restarted, incremental reruns after a change of setting or code, a stand-in
cluster that runs every job as its own process, and injected job failures."""

from __future__ import annotations

import copy
import json
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import h5py
import pandas as pd
import pytest
import torch
from workflow_runner import (
    ROOT,
    copy_workdir,
    dry_run,
    result_files,
    snakemake,
    write_config,
)

pytestmark = pytest.mark.slow


def assert_results_readable(results: Path) -> None:
    """Every result opens: no truncated HDF5, CSV or checkpoint, no temporary files."""
    assert not list(results.rglob("*.part")), "temporary files left behind"
    for path in results.rglob("*.h5"):
        with h5py.File(path) as f:
            for name in f:
                if isinstance(f[name], h5py.Dataset):
                    f[name][()]
    for path in results.rglob("*.csv"):
        if "logs" not in path.parts:
            assert len(pd.read_csv(path)) > 0, path
    for path in results.rglob("ema.pt"):
        torch.load(path, map_location="cpu", weights_only=False)


def test_restart_after_kill_redoes_no_finished_job(killed_and_restarted):
    run = killed_and_restarted
    pending = {out for _, outs in run["pending"] for out in outs}
    rerun_rules = {rule for rule, _ in run["pending"]}
    # Every prior and split file that was finished is not redone. (A prior still training
    # at the kill, or a split no job needed yet, like the tuning split, may be pending.)
    redone = [
        out
        for rule, outs in run["pending"]
        if rule in ("train_prior", "merge_split")
        for out in outs
        if out.removeprefix("results/") in run["before"]
    ]
    assert not redone, redone
    assert "infer_cell" in rerun_rules  # the grid was cut short
    # A temporary extraction shard is removed by its merge: one whose merge was still
    # pending at the kill (the tuning split's, when no job had needed it yet) goes.
    merged_later = {out for rule, outs in run["pending"] if rule == "merge_split" for out in outs}

    def consumed(name: str) -> bool:
        m = re.fullmatch(r"data/(\w+)/shards/(\w+)_\d+\.h5", name)
        return bool(m) and f"results/data/{m[1]}/{m[2]}.h5" in merged_later

    kept = [
        name
        for name in run["before"]
        if f"results/{name}" not in pending and not name.endswith(".part") and not consumed(name)
    ]
    assert any(name.startswith("metrics/") for name in kept)
    changed = [name for name in kept if run["after"].get(name) != run["before"][name]]
    assert not changed, f"finished results were redone or removed: {changed}"
    assert_results_readable(run["work"] / "results")
    again = snakemake(run["work"], "-n", configfile=write_config(run["work"], run["config"]))
    assert "Nothing to be done" in again.stdout + again.stderr


def test_tiny_demo_runs_end_to_end_and_then_does_nothing(killed_and_restarted):
    """Everything the workflow promises is there after the (restarted) run; a second
    run does nothing, quickly; the report builds."""
    tmp_path = killed_and_restarted["work"]
    configfile = write_config(tmp_path, killed_and_restarted["config"])
    res = killed_and_restarted["second"]
    data = tmp_path / "results" / "data" / "mni_t1_singlecoil"
    with h5py.File(data / "train.h5") as f:
        assert f["images"].shape == (3 * 3, 1, 16, 16)  # 3 volumes x 3 slices
    with h5py.File(data / "eval.h5") as f:
        assert f["images"].shape == (2, 1, 16, 16)
    with h5py.File(data / "tune.h5") as f:
        assert f["images"].shape == (1, 1, 16, 16)
    assert not (data / "shards").exists() or not any((data / "shards").iterdir())  # temp()
    logs = tmp_path / "results" / "logs"
    assert (logs / "extract" / "mni_t1_singlecoil_train_0000.log").is_file()
    assert (logs / "demo_volumes" / "mni_t1_singlecoil_train.log").is_file()
    for prior in ("whole", "patch"):
        assert (tmp_path / "results" / "priors" / prior / "ema.pt").is_file()
        assert (tmp_path / "results" / "priors" / prior / "denoise_check.csv").is_file()
    metrics = sorted((tmp_path / "results" / "metrics").rglob("*.csv"))
    # priors x (diffpir: whole + 2 paddings, dps: whole + reflect), and the baseline
    assert len(metrics) == 2 * (3 + 2) + 1
    results = tmp_path / "results"
    for name in ("table1.csv", "table1.md", "table1.tex", "extended.csv", "extended.md"):
        assert (results / "tables" / name).stat().st_size > 0, name
    for stem in ("fig1_padding", "fig2_qualitative", "fig3_memory"):
        for ext in ("png", "pdf"):
            assert (results / "figures" / f"{stem}.{ext}").stat().st_size > 1000, stem
    assert (results / "profile" / "diffpir.csv").is_file()
    assert (results / "priors" / "whole" / "denoise_check_p8.csv").is_file()
    assert "results/tables/" in res.stdout + res.stderr  # where the outputs are

    start = time.perf_counter()
    again = snakemake(tmp_path, "--cores", "2", configfile=configfile)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    assert time.perf_counter() - start < 15

    report = snakemake(tmp_path, "--report", "report.html", configfile=configfile)
    assert report.returncode == 0, report.stderr[-3000:]
    html = (tmp_path / "report.html").read_text(errors="replace")
    assert "fig3_memory.png" in html and "table1.csv" in html


def _rules(jobs):
    return {rule for rule, _ in jobs}


def _outputs(jobs, rule):
    return [outs[0] for r, outs in jobs if r == rule]


def test_changing_one_solver_setting_reruns_only_that_solvers_jobs(killed_and_restarted):
    run = killed_and_restarted
    config = copy.deepcopy(run["config"])
    config["inference"]["solvers"]["dps"]["tasks"]["denoise"]["zeta"] = 0.5
    jobs = dry_run(run["work"], config)
    cells = _outputs(jobs, "infer_cell")
    assert cells and all("/dps/" in c for c in cells), cells
    # every DPS cell: 2 priors x (whole, p8-reflect)
    assert len(cells) == 4
    assert _rules(jobs) <= {"infer_cell", "tables", "all"}, _rules(jobs)


def test_changing_a_training_setting_reruns_that_prior_and_its_dependants(killed_and_restarted):
    run = killed_and_restarted
    config = copy.deepcopy(run["config"])
    config["priors"]["patch"]["train_patch"] = 12
    jobs = dry_run(run["work"], config)
    assert _outputs(jobs, "train_prior") == ["results/priors/patch/ema.pt"]
    for rule, outs in jobs:
        for out in outs:
            assert "/whole/" not in out and "/data/" not in out, (rule, out)
    assert {"denoise_check", "tile_check", "infer_cell", "tables"} <= _rules(jobs)
    assert not _rules(jobs) & {"extract_shard", "merge_split", "infer_baseline"}
    assert len(_outputs(jobs, "infer_cell")) == 5  # the patch prior's cells only


def test_adding_a_patch_size_adds_only_its_jobs(killed_and_restarted):
    run = killed_and_restarted
    config = copy.deepcopy(run["config"])
    config["inference"]["sizes"] = ["whole", 8, 12]
    jobs = dry_run(run["work"], config)
    cells = _outputs(jobs, "infer_cell")
    # per prior: diffpir p12 with both paddings, dps p12 with reflection
    assert len(cells) == 2 * 3 and all("/p12-" in c for c in cells), cells
    assert not _rules(jobs) & {"train_prior", "extract_shard", "infer_baseline", "profile"}


UPSTREAM = {"train_prior", "extract_shard", "merge_split", "denoise_check", "tile_check", "profile"}


def test_lpips_status_is_recorded_and_the_mode_reruns_only_the_inference_cells(
    killed_and_restarted,
):
    """Offline, auto: the run succeeded and the status says whether LPIPS was had (and
    if not, the fix). Switching LPIPS off reruns every inference cell (their LPIPS
    column) and what reads them, never training or extraction."""
    run = killed_and_restarted
    status = json.loads((run["work"] / "resources" / "lpips" / "status.json").read_text())
    assert status["mode"] == "auto"
    assert status["available"] or status["fix"].startswith("curl -fL")
    config = copy.deepcopy(run["config"])
    config["metrics"]["lpips"] = "off"
    jobs = dry_run(run["work"], config)
    assert len(_outputs(jobs, "infer_cell")) == 2 * (3 + 2)
    assert len(_outputs(jobs, "infer_baseline")) == 1
    rules = _rules(jobs)
    assert "tables" in rules and not rules & (UPSTREAM | {"lpips_weights"}), rules
    assert not any(rule.startswith("demo_volumes") for rule in rules), rules


def test_weights_appearing_after_unavailable_rerun_the_rule_and_the_cells(
    killed_and_restarted, tmp_path
):
    """The fix (a file at resources/lpips/) reruns lpips_weights, and with it the cells,
    on the next run; nothing upstream. (On a copy: other tests copy the run's folder.)"""
    run = killed_and_restarted
    work = copy_workdir(run["work"], tmp_path / "work")
    status = json.loads((work / "resources" / "lpips" / "status.json").read_text())
    if status["available"]:
        pytest.skip("this machine's torch hub cache holds the weights")
    weights = work / "resources" / "lpips" / "alexnet-owt-7be5be79.pth"
    weights.write_bytes(b"what curl brought")
    try:
        jobs = dry_run(work, run["config"])
    finally:
        weights.unlink()
    assert "lpips_weights" in _rules(jobs) and len(_outputs(jobs, "infer_cell")) == 10
    assert not _rules(jobs) & UPSTREAM
    jobs = dry_run(work, run["config"])  # the file gone again: nothing to redo
    assert not [job for job in jobs if job[0] != "all"], jobs


def test_changing_a_solver_module_reruns_the_jobs_that_import_it(killed_and_restarted, tmp_path):
    """The package's code is a rerun trigger, comments and formatting aside: a rule reruns
    when a module its command imports changes (the solver registry imports every solver,
    so every grid cell), and only then (training, extraction and the checks stay)."""
    run = killed_and_restarted
    src = tmp_path / "src"
    shutil.copytree(ROOT / "workflow" / "src" / "patchpnp", src / "patchpnp")
    env = {"PYTHONPATH": str(src)}
    module = src / "patchpnp" / "solvers" / "dps.py"

    module.write_text(module.read_text() + "\n# a comment changes nothing\n")
    assert not [job for job in dry_run(run["work"], run["config"], env) if job[0] != "all"]

    module.write_text(module.read_text() + "\nSTEP_SIZE_NOTE = 'changed behaviour'\n")
    jobs = dry_run(run["work"], run["config"], env)
    cells = _outputs(jobs, "infer_cell")
    assert any("/dps/" in c for c in cells) and any("/diffpir/" in c for c in cells), cells
    rules = _rules(jobs)
    assert {"infer_cell", "infer_baseline", "tables"} <= rules
    assert not rules & {"train_prior", "extract_shard", "merge_split", "denoise_check"}, rules


def test_stand_in_cluster_runs_every_job_as_its_own_process_and_survives_faults(
    stand_in_cluster, killed_and_restarted
):
    """The local-cluster profile (cluster-generic executor, one background process
    per job) runs the smallest config, from a copy of the session's data and priors.
    One cell fails once and succeeds on the retry the profile allows; another fails
    every time: it fails alone, the independent jobs finish (--keep-going), and a clean
    rerun completes only what is missing. The numbers equal the local run's: each job is
    self-contained. (The two runs, and what the results held between them, are the
    session's: tests/conftest.py.)"""
    run = stand_in_cluster
    flaky, broken, first = run["flaky"], run["broken"], run["first"]
    assert first.returncode != 0
    results = run["work"] / "results"
    files = run["after_first"]["files"]  # the results after the first run
    attempts = set(run["after_first"]["attempts"])
    assert attempts == {"1", "2"}  # flaky: one failure; broken: first try and one retry
    assert flaky in files  # succeeded on its retry
    assert broken not in files
    assert broken.replace("metrics/", "infer/").replace(".csv", ".h5") not in files
    # independent jobs finished; the aggregation that needs the broken cell did not
    metrics = [f for f in files if f.startswith("metrics/") and f.endswith(".csv")]
    assert len(metrics) == 2 * 2 + 1 - 1
    assert "figures/fig3_memory.png" in files
    assert "tables/table1.csv" not in files
    scripts = run["after_first"]["scripts"]
    submitted = Counter(re.search(r"--target-jobs '(\w+):", text)[1] for text in scripts)
    # every job (targets and localrules aside) went through submit.py, retries included:
    # one script per job the run started as a rule (a restart is started again)
    out = first.stdout + first.stderr
    started = Counter(re.findall(r"^rule (\w+):$", out, re.M))
    assert out.count("Trying to restart job") == 2
    assert submitted == started, (submitted, started)
    assert submitted["infer_cell"] == 4 + 2  # the 4 cells, the 2 faulty ones once more
    kinds = {"calibrate_memory", "tile_check", "profile", "infer_cell", "infer_baseline"}
    assert kinds <= set(submitted), submitted

    before = run["after_first"]["results"]
    second = run["second"]
    assert second.returncode == 0, second.stderr[-3000:]
    after = result_files(results)
    redone = sorted(n for n in before if after[n] != before[n])
    assert not redone, redone
    assert (results / "tables" / "table1.csv").is_file()
    assert_results_readable(results)

    local = killed_and_restarted["work"] / "results"
    for name in (flaky, broken, "metrics/mni_t1_singlecoil/baseline/denoise.csv"):
        ours, theirs = pd.read_csv(results / name), pd.read_csv(local / name)
        pd.testing.assert_series_equal(ours["psnr"], theirs["psnr"])
