"""Memory measurement (CPU and, by its logic, CUDA) and the profile sweeps."""

import json
import os
import platform
import subprocess
import sys

import pandas as pd
import pytest
import torch
from patchpnp.evaluation.profile_table import PROFILE_COLUMNS as COLUMNS
from patchpnp.evaluation.profiling import profile_plan, run_profiles
from patchpnp.metrics import memory
from patchpnp.metrics.memory import PeakMemory
from test_inference import eval_file, tiny_prior  # noqa: F401  (fixtures)

# Run in a fresh process with glibc's heap pinned (no mmap for these sizes, no trim), so
# freed memory is certainly kept and reused: the case a resident high-water mark misses.
REUSE = """
import json, torch
from patchpnp.metrics.memory import PeakMemory, status_kib
pad_chunk, chunk = 2**21, 7 * 2**18  # 8 MiB and 7 MiB of float32: a 7 fits an 8's hole

def pattern():  # the known allocator-level peak: max(5, 3 + 4) x 7 MiB = 49 MiB
    a = [torch.ones(chunk) for _ in range(5)]  # 35 MiB, freed again
    del a
    b = [torch.ones(chunk) for _ in range(3)]  # 21 MiB, kept
    c = [torch.ones(chunk) for _ in range(4)]  # 28 MiB, kept
    return b + c

pad = [torch.ones(pad_chunk) for _ in range(8)]  # 64 MiB touched, then freed: heap keeps it
del pad
hwm = None
try:  # the old measure: the resident high-water mark, reset to the resident set
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status_kib("VmHWM")
    kept = pattern()
    hwm = (status_kib("VmHWM") - base) / 1024
    del kept
except OSError:
    pass
meter = PeakMemory("cpu")
meter.start()
kept = pattern()
peak = meter.stop()
print(json.dumps({"hwm": hwm, **peak._asdict()}))
"""


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="pins glibc's heap")
def test_cpu_working_peak_counts_freed_and_reused_memory():
    mib = 2**20
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "GLIBC_TUNABLES": f"glibc.malloc.mmap_threshold={32 * mib}:"
        f"glibc.malloc.trim_threshold={2**30}",
    }
    res = subprocess.run(
        [sys.executable, "-c", REUSE], env=env, capture_output=True, text=True, check=True
    )
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["working_mib"] == pytest.approx(49.0, rel=0.05)
    assert out["how"] == "torch.profiler memory events + VmRSS"
    assert out["total_mib"] > out["working_mib"] + 50  # + interpreter, libraries, torch
    if out["hwm"] is not None:  # the reason for the allocator level: reuse hides the peak
        assert out["hwm"] < 0.5 * 49.0


def test_cpu_total_is_resident_start_plus_working_peak(monkeypatch):
    monkeypatch.setattr(memory, "resident_bytes", lambda: (300 * 2**20, "VmRSS"))
    keep = torch.ones(4 * 2**18)  # allocated before the start: never counted, even when freed
    meter = PeakMemory("cpu")
    meter.start()
    a = torch.ones(12 * 2**18)  # 12 MiB
    del a, keep
    b = torch.ones(8 * 2**18)  # 8 MiB kept: the peak was a's 12 MiB
    total, working, how = meter.stop()
    assert working == pytest.approx(12.0, rel=0.05)
    assert total == pytest.approx(300.0 + working)
    assert how == "torch.profiler memory events + VmRSS"
    del b


def test_live_bytes_peak_sorts_by_time_and_starts_from_zero():
    assert memory.live_bytes_peak([]) == 0
    # (time, bytes) recorded out of order: 10 up, 4 down, 7 up -> 10, 6, 13
    assert memory.live_bytes_peak([(3, 7), (1, 10), (2, -4)]) == 13
    assert memory.live_bytes_peak([(1, -5), (2, 3)]) == 0  # frees of older blocks only


def test_cuda_path_uses_allocator_statistics(monkeypatch):
    mib = 2**20
    calls = []
    # At the start: 100 MiB allocated (model, inputs) in a 120 MiB pool.
    state = {"allocated": 100 * mib, "peak": 100 * mib, "reserved": 120 * mib}
    state["max_reserved"] = state["reserved"]
    fake = {
        "synchronize": lambda device=None: calls.append("sync"),
        "reset_peak_memory_stats": lambda device=None: calls.append("reset"),
        "memory_allocated": lambda device=None: state["allocated"],
        "max_memory_allocated": lambda device=None: state["peak"],
        "memory_reserved": lambda device=None: state["reserved"],
        "max_memory_reserved": lambda device=None: state["max_reserved"],
        # (free, size) of an 8 GiB device that holds this process's context and pool.
        "mem_get_info": lambda device=None: (7692 * mib - state["reserved"], 8192 * mib),
    }
    for name, fn in fake.items():
        monkeypatch.setattr(memory.torch.cuda, name, fn)
    meter = PeakMemory("cuda:0")
    meter.start()
    assert calls == ["sync", "reset"]
    # The work: 256 MiB above the baseline at its peak, the pool grown to 400 MiB at the
    # peak, and shrunk to 380 MiB by the end (empty_cache-like).
    state.update(peak=356 * mib, max_reserved=400 * mib, reserved=380 * mib, allocated=101 * mib)
    total, working, how = meter.stop()
    assert working == 256.0
    assert total == 500.0 + 400.0  # context + the pool at its peak
    assert how == "cuda.max_memory_allocated + mem_get_info"
    assert calls[-1] == "sync"


def test_plan_covers_both_sweeps():
    jobs = profile_plan(["diffpir", "dps"], 64, [16, 32, "whole"], [64, 128], 32)
    per_solver = 2 * 2 + 1 + 2 * 2  # patch sizes x batch modes, whole, image sizes x modes
    assert len(jobs) == 2 * per_solver
    sizes = [j for j in jobs if j["sweep"] == "inference_size" and j["solver"] == "dps"]
    assert {(j["mode"], j["inference_size"], j["patch_batch"]) for j in sizes} == {
        ("patch", 16, "all"),
        ("patch", 16, "1"),
        ("patch", 32, "all"),
        ("patch", 32, "1"),
        ("whole", 64, "none"),
    }
    grow = [j for j in jobs if j["sweep"] == "image_size" and j["mode"] == "patch"]
    assert {j["inference_size"] for j in grow} == {32}
    assert {j["image_size"] for j in grow} == {64, 128}


@pytest.mark.slow
def test_profiles_run_in_fresh_processes(tmp_path, eval_file, tiny_prior):  # noqa: F811
    # The image-size sweep at the fixed size repeats two configurations of the other
    # sweep (whole, and patches of 8 one at a time): measured once, reported in both.
    jobs = profile_plan(["dps"], 16, [8, "whole"], [16], 8)
    table = run_profiles(
        jobs, tmp_path / "p.csv", prior=tiny_prior, eval_h5=eval_file, steps=1, progress=False
    )
    assert list(table.columns) == COLUMNS and len(table) == len(jobs) == 5
    grow = table[table["sweep"] == "image_size"].drop(columns="sweep").reset_index(drop=True)
    fixed = table[(table["sweep"] == "inference_size") & (table["patch_batch"] != "all")]
    fixed = fixed.drop(columns="sweep").sort_values("mode", ascending=False)
    pd.testing.assert_frame_equal(grow, fixed.reset_index(drop=True))
    assert pd.read_csv(tmp_path / "p.csv").shape == table.shape
    patch = table[(table["mode"] == "patch") & (table["sweep"] == "inference_size")]
    assert set(patch["tiles_per_call"]) == {9}  # (16 / 8 + 1)^2 tiles of the shifted grid
    assert (table["seconds_per_call"] > 0).all() and (table["peak_working_mib"] > 0).all()
    assert (table["peak_total_mib"] > table["peak_working_mib"]).all()


@pytest.mark.slow
def test_a_failing_profile_names_its_configuration(tmp_path, eval_file):  # noqa: F811
    jobs = profile_plan(["dps"], 16, ["whole"], [], 8)
    with pytest.raises(RuntimeError, match="profile .*'solver': 'dps'"):
        run_profiles(jobs, tmp_path / "p.csv", prior=tmp_path / "missing.pt", eval_h5=eval_file)
    assert not (tmp_path / "p.csv").exists()


def test_profile_plan_adds_the_auto_micro_batch_per_patch_size():
    plain = profile_plan(["dps"], 64, [16, 32, "whole"], [], 32)
    auto = profile_plan(["dps"], 64, [16, 32, "whole"], [], 32, auto=True)
    extra = [j for j in auto if j not in plain]
    assert [(j["inference_size"], j["patch_batch"]) for j in extra] == [(16, "auto"), (32, "auto")]
