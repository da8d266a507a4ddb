"""Bad input and faults outside the config: where results go, interrupted writes,
corrupt volumes among valid ones, the fault injector and the code digests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from fastmri_files import write_folder
from job_client import FRESH_JOBS_ENV
from patchpnp.atomic import OutputLocationError, atomic_path, check_writable_dir
from patchpnp.pipeline.faults import InjectedFault, maybe_fail, parse_rules
from patchpnp.pipeline.provenance import code_digest, module_digest
from session_runs import background
from workflow_runner import snakemake, tiny_demo_config, write_config


# -- where results go ------------------------------------------------------------------
def test_results_location_must_be_a_writable_folder(tmp_path):
    check_writable_dir(tmp_path / "results" / "deeper")  # missing folders are created later
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputLocationError, match=r"results must go to a folder, but .*file"):
        check_writable_dir(tmp_path / "file" / "results")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "at-all")
    with pytest.raises(OutputLocationError, match="broken symbolic link"):
        check_writable_dir(tmp_path / "dangling")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_results_folder_is_refused(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results").chmod(0o555)
    try:
        with pytest.raises(OutputLocationError, match="cannot write results there"):
            check_writable_dir(tmp_path / "results")
    finally:
        (tmp_path / "results").chmod(0o755)


@pytest.mark.slow
def test_workflow_stops_when_results_cannot_be_written(tmp_path):
    (tmp_path / "results").write_text("a file where the results folder should be")
    res = snakemake(tmp_path, "--cores", "1", configfile=write_config(tmp_path, tiny_demo_config()))
    assert res.returncode != 0
    assert "results: results must go to a folder, but results is a file" in res.stdout + res.stderr
    assert (tmp_path / "results").read_text().startswith("a file")


# -- interrupted writes ----------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import sys, time
    import h5py, numpy as np
    from patchpnp.atomic import atomic_path
    with atomic_path(sys.argv[1]) as tmp, h5py.File(tmp, "w") as f:
        d = f.create_dataset("images", shape=(4096, 1, 64, 64), dtype="f4")
        for i in range(4096):
            d[i] = np.random.rand(1, 64, 64)
            if i == 8:
                print("writing", flush=True)
            time.sleep(0.01)
    """
)


def test_hdf5_write_killed_midway_leaves_no_output(tmp_path):
    dest = tmp_path / "eval.h5"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(dest)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not dest.exists()
    assert len(list(tmp_path.glob(".eval.h5.*.part"))) == 1  # the killed writer's leftover

    # The next writer of the same file cleans up, and its result is whole.
    with atomic_path(dest) as tmp, h5py.File(tmp, "w") as f:
        f["images"] = np.zeros((2, 1, 4, 4), np.float32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.h5"]
    with h5py.File(dest) as f:
        assert f["images"].shape == (2, 1, 4, 4)


def test_failed_write_leaves_the_previous_result(tmp_path):
    dest = tmp_path / "table.csv"
    dest.write_text("old,complete\n")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("new,partial")
        raise RuntimeError("interrupted")
    assert dest.read_text() == "old,complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


# -- a fastMRI folder mixing valid and corrupt volumes ----------------------------------
@background("corrupt_volume_run")
def _corrupt_volume_run(work: Path, env: dict) -> Path:
    """`snakemake data --keep-going` on a fastMRI folder where one training volume is
    truncated mid-file."""
    root = work / "fastmri"
    write_folder(root / "t1_train", 4, "singlecoil", n_slices=5, size=32)
    write_folder(root / "t1_val", 4, "singlecoil", n_slices=3, size=32)
    good = sorted((root / "t1_train").glob("*.h5"))
    corrupt = root / "t1_train" / "file_zz_corrupt.h5"
    corrupt.write_bytes(good[0].read_bytes()[:2000])  # truncated mid-file

    config = tiny_demo_config()
    data = config["data"]
    data["source"] = "fastmri"
    data.pop("demo")
    data["datasets"] = {
        "t1": {"layout": "singlecoil", "train_dir": "t1_train", "eval_dir": "t1_val"}
        | {"n_eval": 2, "n_tune": 1}
    }
    config["fastmri_root"] = str(root)
    config["figures"]["dataset"] = None
    del config["generalization"]  # its domains name the demo's datasets
    configfile = write_config(work, config)
    # Its jobs start as outside the tests: fresh interpreters running the installed
    # console script, not forks of the session's job server (tests/job_server.py).
    res = snakemake(
        work, "data", "--cores", "2", "--keep-going", configfile=configfile, base_env=env,
        extra_env={FRESH_JOBS_ENV: "1"},
    )  # fmt: skip
    assert res.returncode != 0, "the run went through a corrupt volume"
    return work


@pytest.mark.slow
def test_corrupt_volume_among_valid_ones_fails_its_shard_only(corrupt_volume_run):
    tmp_path = corrupt_volume_run
    log = (tmp_path / "results" / "logs" / "extract" / "t1_train_0002.log").read_text()
    assert "file_zz_corrupt.h5" in log and ("HDF5" in log or "truncated" in log), log
    out = tmp_path / "results" / "data" / "t1"
    assert (out / "eval.h5").is_file() and (out / "tune.h5").is_file()  # independent splits
    assert not (out / "train.h5").exists()
    assert not list(out.rglob("*.part"))
    assert not (out / "shards" / "train_0002.h5").exists()


# -- the fault injector ----------------------------------------------------------------
def test_fault_rules_parse_and_count(tmp_path, monkeypatch):
    assert parse_rules("a/b.csv@2; c") == [("a/b.csv", 2), ("c", None)]
    with pytest.raises(ValueError, match="not a count"):
        parse_rules("x@two")
    monkeypatch.delenv("PATCHPNP_INJECT_FAULT", raising=False)
    maybe_fail("anything")  # unset: nothing happens
    monkeypatch.setenv("PATCHPNP_INJECT_FAULT", "cell.csv@2;always")
    monkeypatch.setenv("PATCHPNP_INJECT_FAULT_STATE", str(tmp_path))
    maybe_fail("infer --metrics other.csv")
    for attempt in (1, 2):
        with pytest.raises(InjectedFault, match=f"injected fault {attempt} of 2"):
            maybe_fail("infer --metrics cell.csv")
    maybe_fail("infer --metrics cell.csv")  # the third run goes through
    for _ in range(3):
        with pytest.raises(InjectedFault):
            maybe_fail("always fails")


def test_injected_fault_exits_with_status_3(monkeypatch, capsys):
    from patchpnp.cli import main

    monkeypatch.setenv("PATCHPNP_INJECT_FAULT", "check-config")
    assert main(["check-config", "config/config.yaml"]) == 3
    assert "injected fault" in capsys.readouterr().err


# -- code digests ----------------------------------------------------------------------
def test_code_digest_follows_code_not_comments(tmp_path, monkeypatch):
    pkg = tmp_path / "digestpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    module = pkg / "step.py"
    monkeypatch.syspath_prepend(str(tmp_path))

    def digest(source: str) -> str:
        module.write_text(source)
        module_digest.cache_clear()
        return module_digest("digestpkg.step")

    base = digest("def step(x):\n    return 2 * x\n")
    assert digest("# why: doubling\ndef step(x):\n\n    return 2*x  # twice\n") == base
    assert digest("def step(x):\n    return 3 * x\n") != base
    assert len(code_digest("patchpnp.solvers.dps", "patchpnp.solvers.base")) == 16
    with pytest.raises(ValueError, match="not a Python source module"):
        module_digest("patchpnp.no_such_module")


def test_digests_follow_the_import_closure_not_a_list(tmp_path, monkeypatch):
    """A module's digest covers what it imports, at any depth and inside functions: add
    an import and the digest follows the new module; comments change nothing."""
    from patchpnp.pipeline import provenance

    pkg = tmp_path / "closurepkg"
    (pkg / "sub").mkdir(parents=True)
    for init in (pkg / "__init__.py", pkg / "sub" / "__init__.py"):
        init.write_text("")
    (pkg / "entry.py").write_text("def run():\n    from .sub import helper\n    return 1\n")
    (pkg / "sub" / "helper.py").write_text("X = 1\n")
    (pkg / "extra.py").write_text("Y = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def digest() -> str:
        provenance.module_digest.cache_clear()
        provenance.import_closure.cache_clear()
        modules = provenance.import_closure("closurepkg.entry", package="closurepkg")
        return modules, provenance.code_digest(*modules)

    modules, base = digest()
    assert modules == ("closurepkg", "closurepkg.entry", "closurepkg.sub", "closurepkg.sub.helper")
    (pkg / "sub" / "helper.py").write_text("# why: one\nX = 1  # still one\n")
    assert digest()[1] == base  # a comment reruns nothing
    (pkg / "sub" / "helper.py").write_text("X = 2\n")
    changed = digest()[1]
    assert changed != base  # a lazily imported module's change reruns
    (pkg / "extra.py").write_text("Y = 2\n")
    assert digest()[1] == changed  # not imported: not covered
    (pkg / "entry.py").write_text(
        "def run():\n    from .sub import helper\n    import closurepkg.extra\n    return 1\n"
    )
    modules, with_extra = digest()
    assert "closurepkg.extra" in modules and with_extra != changed
    (pkg / "extra.py").write_text("Y = 3\n")
    assert digest()[1] != with_extra  # the new import is followed


def test_each_command_digest_covers_what_the_command_runs():
    from patchpnp.pipeline.provenance import command_code, command_modules

    infer = command_modules("infer")
    for module in ("inference.cell", "solvers.dps", "solvers.diffpir", "solvers.streams",
                   "patching.patches", "patching.tiling", "metrics.quality",
                   "physics.superres", "prior.network", "prior.loading", "runtime"):  # fmt: skip
        assert f"patchpnp.{module}" in infer, module
    tables = command_modules("tables")
    assert "patchpnp.evaluation.claims" in tables and "patchpnp.evaluation.aggregate" in tables
    assert not any(m.startswith(("patchpnp.prior", "patchpnp.solvers")) for m in tables)
    assert "patchpnp.cli" not in infer  # argument parsing alone reruns nothing
    assert command_code("train") != command_code("infer") != command_code("tables")
    with pytest.raises(ValueError, match="no command 'nope'"):
        command_modules("nope")
