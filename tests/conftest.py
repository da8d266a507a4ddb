"""Shared fixtures.

The end-to-end tests' Snakemake runs are built once per session, each into a folder of
its own (:func:`shared_runs`), and read by the tests: the tiny demo's data and priors, the
killed-and-restarted run and the stand-in cluster's runs on copies of them, and the runs
of `snakemake solvers uncertainty resolution padis_table generalization` (on a copy of
the killed run) and `snakemake mri`. A test that runs Snakemake for real on one works on
a copy (``workflow_runner.copy_workdir``).

Those runs, and the test modules' own heavy commands (tests/session_runs.py), start in
three background threads (:data:`CHAINS`) as soon as the session's first test starts
(only the ones the selected tests need), and the tests that read them run last, in the
order the runs finish. A fixture waits for its run, or builds it itself when nothing
started it.

Where the time goes, and why it is spent this way (2 cores):
- pytest-xdist runs the tests in two workers (pyproject's addopts). Each worker starts
  the background threads, and the first to reach a run builds it for both (a lock per
  run; :class:`Runs`); the tests that share a run's folder go to one worker
  (:func:`pytest_xdist_make_scheduler`).
- The runs' ``patchpnp`` jobs fork from a job server that imported torch once
  (tests/job_server.py), instead of each importing it in a fresh interpreter.
"""

import copy
import fcntl
import json
import os
import pickle
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
import workflow_runner
import yaml
from fastmri_files import write_folder
from job_client import FRESH_JOBS_ENV
from job_server import JobServer
from patchpnp.atomic import atomic_path
from session_runs import REGISTERED
from workflow_runner import (
    copy_workdir,
    dry_run,
    result_files,
    runner_env,
    snakemake,
    snakemake_command,
    tiny_demo_config,
    tiny_mri_config,
    write_config,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session", autouse=True)
def no_slurm_controller(tmp_path_factory):
    """Every Snakemake start imports the SLURM executor plugin, which asks `scontrol show
    config` for MinJobAge when SLURM's commands are installed. With no controller (or
    munge) running, as on CI's machine before .test/slurm starts them, each ask waits
    about 9 s. The tests submit nothing to SLURM: their commands (Snakemake runs and
    the jobs they start inherit the environment) read a configuration whose controller
    refuses at once. .test/slurm's real cluster is tested outside pytest."""
    conf = tmp_path_factory.mktemp("slurm") / "slurm.conf"
    conf.write_text(
        "ClusterName=patchpnp-tests\nSlurmctldHost=localhost\nSlurmctldPort=1\n"
        "AuthType=auth/none\nMessageTimeout=1\nTCPTimeout=1\n"
        "NodeName=localhost CPUs=1\nPartitionName=none Nodes=localhost\n"
    )
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    yield conf
    if before is None:
        del os.environ["SLURM_CONF"]
    else:
        os.environ["SLURM_CONF"] = before


@pytest.fixture(scope="session")
def paper_fastmri(tmp_path_factory) -> Path:
    """A fastMRI location with the paper's folders, holding small valid volumes. Read
    only: a test that removes a folder works on a copy."""
    root = tmp_path_factory.mktemp("paper") / "fastmri"
    # The training volumes hold the 2000 slices (less 5 edge slices at each end) that
    # the paper config's largest generalization.n_train cuts from each anatomy.
    write_folder(root / "knee_singlecoil_train", 4, "singlecoil", n_slices=510, size=16)
    write_folder(root / "knee_singlecoil_val", 72, "singlecoil", n_slices=3, size=16)
    write_folder(root / "brain_multicoil_train", 3, "multicoil", n_slices=680, size=16, coils=2)
    write_folder(root / "brain_multicoil_val", 210, "multicoil", n_slices=3, size=16, coils=2)
    return root


@pytest.fixture(scope="session")
def paper_ct(tmp_path_factory) -> Path:
    """A padis.ct.root for config/paper.yaml: AAPM-shaped patient folders (small slices),
    as many evaluation patients as its n_eval + n_tune. Read only."""
    from write_ct_dicom import write_ct_root

    ct = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["padis"]["ct"]
    root = tmp_path_factory.mktemp("paper") / "ct"
    write_ct_root(root, train_patients=2, eval_patients=ct["n_eval"] + ct["n_tune"], slices=1,
                  size=16)  # fmt: skip
    return root


@pytest.fixture(scope="session")
def paper_data(paper_fastmri, paper_ct) -> list[str]:
    """``--config`` entries that point config/paper.yaml at the session's data."""
    return [f"fastmri_root={paper_fastmri}", f"padis={{ct: {{root: {paper_ct}}}}}"]


# -- the session's Snakemake runs ------------------------------------------------------
class Runs:
    """Each run once per session: ``get(name)`` returns its result, waiting while another
    thread builds it. ``env`` is the environment the runs start from, taken when the
    session starts (a test's monkeypatched variables must not reach them).

    Once per session, not per process: under pytest-xdist each worker has its own
    ``Runs``, and the runs live in one folder of the whole session (:func:`shared_runs`).
    The first process to take a run's lock builds it there and leaves its result (or its
    error) pickled beside it; the others wait on the lock and read that."""

    def __init__(self, shared: Path, env: dict):
        self.shared, self.env = shared, env
        self.lock = threading.Lock()
        self.futures: dict[str, Future] = {}

    def get(self, name: str):
        with self.lock:
            future, mine = self.futures.get(name), False
            if future is None:
                future = self.futures[name] = Future()
                mine = True
        if mine:
            try:
                future.set_result(self._build_once(name))
            except BaseException as err:
                future.set_exception(err)
        return future.result()

    def _build_once(self, name: str):
        done = self.shared / f"{name}.pickle"
        with open(self.shared / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # held while this process builds it
            if not done.exists():
                start = time.time()
                work = self.shared / name
                shutil.rmtree(work, ignore_errors=True)  # a builder that died left it
                work.mkdir()
                build = BUILDS.get(name)
                try:
                    outcome = (
                        "result",
                        build(self, work) if build else REGISTERED[name](work, self.env),
                    )
                except BaseException as err:  # the other processes' tests fail with it too
                    outcome = ("error", err)
                try:
                    payload = pickle.dumps(outcome)
                except Exception as err:
                    payload = pickle.dumps(
                        ("error", RuntimeError(f"{name}: {outcome!r:.3000} ({err})"))
                    )
                with atomic_path(done) as part:
                    part.write_bytes(payload)
                (self.shared / f"{name}.seconds").write_text(f"{start} {time.time()}")
        kind, value = pickle.loads(done.read_bytes())
        if kind == "error":
            raise value
        return value

    def start(self, names: set[str]) -> None:
        """Build ``names`` in background threads, one per chain of :data:`CHAINS` (a
        build that needs another's folder waits for it in ``get``)."""

        def build_all(chain, nice):
            if nice:  # Linux: a thread's niceness is its own and passes to what it starts
                try:
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
                except (AttributeError, OSError):
                    pass
            for name in chain:
                try:
                    self.get(name)
                except BaseException:  # kept in its future: the tests that read it fail
                    pass

        for i, (chain, nice) in enumerate(CHAINS):
            chain = [n for c in chain for n in (REGISTERED if c == MODULE_RUNS else [c])]
            chain = [name for name in chain if name in names]
            if chain:
                threading.Thread(
                    target=build_all, args=(chain, nice), name=f"snakemake-runs-{i}", daemon=True
                ).start()


def _tiny_demo_priors(runs: Runs, work: Path) -> Path:
    configfile = write_config(work, tiny_demo_config())
    res = snakemake(work, "priors", "--cores", "2", configfile=configfile, base_env=runs.env)
    assert res.returncode == 0, res.stderr[-3000:]
    return work


def _killed_and_restarted(runs: Runs, work: Path) -> dict:
    copy_workdir(runs.get("tiny_demo_priors"), work)
    config = tiny_demo_config()
    configfile = write_config(work, config)
    log = (work / "first.log").open("w")
    first = subprocess.Popen(
        snakemake_command(work, "--cores", "2", configfile=configfile),
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=runner_env(base_env=runs.env),
        start_new_session=True,
    )
    metrics = work / "results" / "metrics"
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and first.poll() is None:
        if len(list(metrics.rglob("*.csv"))) >= 3:
            break
        time.sleep(0.2)
    assert first.poll() is None, "the workflow ended before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    log.close()
    before = result_files(work / "results")

    unlock = snakemake(work, "--unlock", configfile=configfile, base_env=runs.env)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    pending = dry_run(work, config, base_env=runs.env)
    second = snakemake(work, "--cores", "2", configfile=configfile, base_env=runs.env)
    assert second.returncode == 0, second.stderr[-3000:]
    return {
        "work": work,
        "before": before,
        "pending": pending,
        "after": result_files(work / "results"),
        "second": second,
    }


def _stand_in_cluster(runs: Runs, work: Path) -> dict:
    """The local-cluster profile's two runs of tests/test_scaleout.py's stand-in cluster
    test, with what the results folder held between them."""
    copy_workdir(runs.get("tiny_demo_priors"), work)
    config = tiny_demo_config()
    # The smallest grid that still has every kind of job: one prior, both solvers.
    config["priors"] = {"patch": config["priors"]["patch"]}
    del config["generalization"]  # it compares two priors
    config["padis"]["priors"] = ["patch", "position"]
    config["inference"]["paddings"] = ["reflect"]
    configfile = write_config(work, config)
    profile = ["--profile", str(ROOT / "profiles" / "local-cluster")]
    flaky = "metrics/mni_t1_singlecoil/patch/dps/denoise/p8-reflect.csv"
    broken = "metrics/mni_t1_singlecoil/patch/diffpir/denoise/whole-none.csv"
    state = work / "faults"
    env = {
        "PATCHPNP_INJECT_FAULT": f"{flaky}@1;{broken}@5",
        "PATCHPNP_INJECT_FAULT_STATE": str(state),
    }
    first = snakemake(
        work, *profile, "--keep-going", configfile=configfile, extra_env=env, timeout=900,
        base_env=runs.env,
    )  # fmt: skip
    results = work / "results"
    after_first = {
        "attempts": [p.read_text() for p in state.iterdir()],
        "files": {str(p.relative_to(results)) for p in results.rglob("*") if p.is_file()},
        "scripts": [p.read_text() for p in (work / ".snakemake" / "local-cluster").glob("*.sh")],
        "results": result_files(results),
    }
    second = snakemake(work, *profile, configfile=configfile, timeout=600, base_env=runs.env)
    return {
        "work": work,
        "flaky": flaky,
        "broken": broken,
        "first": first,
        "after_first": after_first,
        "second": second,
    }


def tiny_extensions_config() -> dict:
    """The tiny demo as `snakemake solvers uncertainty resolution padis_table` runs it:
    padis, tuned, with the patch and position-aware priors and PaDIS's own solver only (every
    job is a process that imports torch; tests/test_padis_pipeline.py plans the full
    grid and judges both claims on tables of its own)."""
    config = tiny_demo_config()
    config["padis"]["priors"] = ["patch", "position"]
    config["padis"]["solvers"] = {"padis_dps": config["padis"]["solvers"]["padis_dps"]}
    # PaDIS's step sizes tuned on two tuning phantoms and the grid's tuning slice
    config["padis"]["tune"] = {"per_decade": 1, "decades": 0.5}
    config["padis"]["ct"]["n_tune"] = 2
    return config


def _tiny_solvers_uncertainty_resolution(runs: Runs, work: Path) -> Path:
    # On a copy of the finished tiny demo: its data, priors and grid are built (the
    # grid's priors are padis's MRI domain's and generalization's at all). One run for
    # every extension target.
    copy_workdir(runs.get("killed_and_restarted")["work"], work)
    configfile = write_config(work, tiny_extensions_config())
    targets = ("solvers", "uncertainty", "resolution", "padis_table", "generalization")
    res = snakemake(work, *targets, "--cores", "2", configfile=configfile, base_env=runs.env)
    assert res.returncode == 0, res.stderr[-3000:]
    return work


def _tiny_mri(runs: Runs, work: Path) -> Path:
    config = tiny_mri_config()
    # One prior and one solver keep it under a minute; the plan's full grid is tested
    # in tests/test_mri.py.
    config["mri"]["priors"] = ["patch"]
    del config["mri"]["solvers"]["dps"]
    configfile = write_config(work, config)
    res = snakemake(work, "mri", "--cores", "2", configfile=configfile, base_env=runs.env)
    assert res.returncode == 0, res.stderr[-3000:]
    return work


# name (the fixture that reads it) -> how it is built, in the order the builds finish
# (the tests that read them run in this order: conftest's pytest_collection_modifyitems)
BUILDS = {
    "tiny_demo_priors": _tiny_demo_priors,
    "killed_and_restarted": _killed_and_restarted,
    "stand_in_cluster": _stand_in_cluster,
    "tiny_solvers_uncertainty_resolution": _tiny_solvers_uncertainty_resolution,
    "tiny_mri": _tiny_mri,
}
# Background threads, each a list of runs and the niceness of their processes: the
# chain of copies of the finished tiny demo; the test modules' own runs
# (tests/session_runs.py, MODULE_RUNS), short, then the stand-in cluster (a copy of the
# priors' folder, so it need not wait for the chain); and, niced, the run that needs
# nothing, which fills the cores whenever the tests and the other threads leave one idle
# (a Snakemake run waits on its slowest job; a test waits on a run). The tests that
# read the killed run are the most: it comes first after the priors.
MODULE_RUNS = "<the test modules' runs>"
CHAINS = [
    (["tiny_demo_priors", "killed_and_restarted", "tiny_solvers_uncertainty_resolution"], 0),
    ([MODULE_RUNS, "stand_in_cluster"], 0),
    (["tiny_mri"], 10),
]  # fmt: skip


def _run_names() -> list[str]:
    """Every session run in the order its tests go: the test modules' (session_runs),
    short, done long before the builds, so that their tests run while the builds go on
    rather than after the last one; then the Snakemake builds."""
    return [*REGISTERED, *BUILDS]


def _last_run_read(item) -> int:
    """0 for a test that reads no session run; else 1 + the place, in the build order, of
    the last run it reads (its fixture closure names every run it waits for)."""
    names = getattr(item, "fixturenames", ())
    read = [i for i, name in enumerate(_run_names()) if name in names]
    return 1 + max(read) if read else 0


def pytest_collection_modifyitems(session, config, items):
    """The tests that read the session's runs go last, so the others run while the
    background thread builds them, and in the order the runs are built: a test waits
    only for its own run, not for one built after it (a stable sort: each group keeps
    its order).

    Under pytest-xdist, the tests that read a Snakemake run's folder run in one worker,
    one after the other (:func:`pytest_xdist_make_scheduler`): some run Snakemake in it (a
    dry run, a report, a run with nothing to do, which takes the folder's lock) or put a
    file there for the length of a test. A worker writes each test's group for the
    scheduler, which sees node ids only."""
    items.sort(key=_last_run_read)
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    names, groups = _run_names(), {}
    for item in items:
        last = _last_run_read(item)
        marked = item.get_closest_marker("xdist_group")
        if marked:
            groups[item.nodeid] = marked.args[0]
        elif last and names[last - 1] in BUILDS:
            groups[item.nodeid] = names[last - 1]
    shared = shared_runs(config._tmp_path_factory.getbasetemp())
    shared.mkdir(exist_ok=True)
    # Every worker writes the same file at once: each its own temporary name (atomic_path
    # would remove the other worker's as a leftover), then the rename.
    part = shared / f"groups.{os.environ['PYTEST_XDIST_WORKER']}.part"
    part.write_text(json.dumps(groups))
    part.rename(shared / GROUPS)


GROUPS = "groups.json"  # node id -> the group it runs in, in the session runs' folder


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup`` with the groups the workers wrote (:data:`GROUPS`): each group
    goes to one worker, every other test to whichever worker is free. (pytest-xdist
    3.8's own loadgroup cannot mark node ids under pytest 9: they are read only.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    folder = shared_runs(config._tmp_path_factory.getbasetemp())

    class RunGroups(LoadScopeScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # read once the workers have collected
                self.groups = json.loads((folder / GROUPS).read_text())
            return self.groups.get(nodeid, nodeid)

    return RunGroups(config, log)


def shared_runs(base: Path) -> Path:
    """The folder of the session's runs, from a process's temporary base folder: under
    pytest-xdist a worker's is a folder of the session's (``popen-gw0``), shared by all."""
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "session-runs"


def pytest_sessionstart(session):
    session.config.stash[_STARTED] = time.time()


_STARTED = pytest.StashKey[float]()


def pytest_terminal_summary(terminalreporter, config):
    """The session runs and their wall times (they overlap the tests)."""
    # pytest's own factory (set up before any test): the session's base temporary folder
    folder = shared_runs(config._tmp_path_factory.getbasetemp())
    # (end, start, name) of each run, in the order they ended
    ended = sorted(
        (*map(float, p.read_text().split()[::-1]), p.stem) for p in folder.glob("*.seconds")
    )
    if not ended:
        return
    t0 = config.stash[_STARTED]
    terminalreporter.write_sep("-", "session runs (background; wall s, finished at s)")
    for end, start, name in ended:
        terminalreporter.write_line(f"{end - start:8.1f}{end - t0:8.1f}  {name}")
    terminalreporter.write_line(f"{'':8s}{time.time() - t0:8.1f}  (the last test)")


@pytest.fixture(scope="session", autouse=True)
def job_server(tmp_path_factory, no_slurm_controller):
    """The session's job server (tests/job_server.py): the runs' ``patchpnp`` jobs fork
    from one process that imported torch, not each from a fresh interpreter.
    ``PATCHPNP_TESTS_FRESH_JOBS=1`` leaves it off."""
    if os.environ.get(FRESH_JOBS_ENV):
        yield None
        return
    server = JobServer(tmp_path_factory.mktemp("jobs"), dict(os.environ))
    workflow_runner.JOB_COMMANDS.append(server.bin)
    yield server
    workflow_runner.JOB_COMMANDS.remove(server.bin)
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def runs(request, tmp_path_factory, no_slurm_controller, job_server) -> Runs:
    """The session's Snakemake runs; the ones the selected tests read start building."""
    shared = shared_runs(tmp_path_factory.getbasetemp())
    shared.mkdir(exist_ok=True)
    runs = Runs(shared, dict(os.environ))
    needed = set()
    for item in request.session.items:
        needed |= set(_run_names()) & set(getattr(item, "fixturenames", ()))
    if needed:
        runs.start(needed)
    return runs


@pytest.fixture(scope="session")
def tiny_demo_priors(runs) -> Path:
    """`snakemake priors` on the tiny demo (workflow_runner.tiny_demo_config): the demo
    volumes, the splits, both priors and their denoising checks. The working folder is
    read only: copy it (copy_workdir) to run Snakemake on it."""
    return runs.get("tiny_demo_priors")


@pytest.fixture(scope="session")
def killed_and_restarted(runs, tiny_demo_priors):
    """The tiny workflow (from a copy of tiny_demo_priors: data and priors are built)
    killed outright (SIGKILL to Snakemake and its jobs) once some grid cells are done,
    then started again and run to the end. Its folder is the rerun tests' own; a test
    that runs more than a dry run, a report or a run with nothing to do works on a copy."""
    return {**runs.get("killed_and_restarted"), "config": copy.deepcopy(tiny_demo_config())}


@pytest.fixture(scope="session")
def stand_in_cluster(runs, tiny_demo_priors) -> dict:
    """The stand-in cluster's runs (profiles/local-cluster, injected faults; see
    tests/test_scaleout.py) on a copy of tiny_demo_priors."""
    return runs.get("stand_in_cluster")


@pytest.fixture(scope="session")
def tiny_solvers_uncertainty_resolution(runs, killed_and_restarted) -> Path:
    """`snakemake solvers uncertainty resolution` on a copy of the finished tiny demo."""
    return runs.get("tiny_solvers_uncertainty_resolution")


@pytest.fixture(scope="session")
def tiny_padis(tiny_solvers_uncertainty_resolution) -> Path:
    """`snakemake padis_table` on a copy of the finished tiny demo (conftest's
    tiny_extensions_config), run together with solvers, uncertainty and resolution."""
    return tiny_solvers_uncertainty_resolution


@pytest.fixture(scope="session")
def tiny_generalization(tiny_solvers_uncertainty_resolution) -> Path:
    """`snakemake generalization` on a copy of the finished tiny demo, run together with
    the other extension targets (its all-slice priors and in-distribution cells are the
    grid's)."""
    return tiny_solvers_uncertainty_resolution


@pytest.fixture(scope="session")
def tiny_mri(runs) -> Path:
    """`snakemake mri` on the tiny demo with a multicoil dataset (one prior, one solver)."""
    return runs.get("tiny_mri")
