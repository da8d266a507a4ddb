"""Memory measurement (CPU and, by its logic, CUDA) and the profile sweeps."""

import pandas as pd
import pytest
import torch
from patchpnp import memory
from patchpnp.memory import PeakMemory
from patchpnp.profiling import COLUMNS, profile_plan, run_profiles
from test_inference import eval_file, tiny_prior  # noqa: F401  (fixtures)


def test_cpu_peak_sees_a_large_allocation_and_not_the_baseline():
    keep = torch.ones(20 * 2**20 // 4)  # 20 MiB already resident: part of the baseline
    meter = PeakMemory("cpu")
    meter.start()
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB allocated and touched
    del big
    peak, how = meter.stop()
    assert how in ("VmHWM reset", "ru_maxrss")
    if how == "VmHWM reset":
        assert 60 < peak < 90
    del keep


def test_cuda_path_uses_allocator_statistics(monkeypatch):
    calls = []
    state = {"allocated": 100 * 2**20, "peak": 100 * 2**20}
    fake = {
        "synchronize": lambda device=None: calls.append("sync"),
        "reset_peak_memory_stats": lambda device=None: calls.append("reset"),
        "memory_allocated": lambda device=None: state["allocated"],
        "max_memory_allocated": lambda device=None: state["peak"],
    }
    for name, fn in fake.items():
        monkeypatch.setattr(memory.torch.cuda, name, fn)
    meter = PeakMemory("cuda:0")
    meter.start()
    state["peak"] = 356 * 2**20  # the work reached 256 MiB above the 100 MiB baseline
    peak, how = meter.stop()
    assert (peak, how) == (256.0, "cuda.max_memory_allocated")
    assert calls[:2] == ["sync", "reset"]


def test_cpu_falls_back_to_ru_maxrss_where_the_reset_is_refused(monkeypatch):
    monkeypatch.setattr(memory, "reset_peak_rss", lambda: False)
    meter = PeakMemory("cpu")
    meter.start()
    assert meter.stop()[1] == "ru_maxrss"


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


def test_profiles_run_in_fresh_processes(tmp_path, eval_file, tiny_prior):  # noqa: F811
    jobs = profile_plan(["dps"], 16, [8, "whole"], [32], 8)
    table = run_profiles(
        jobs, tmp_path / "p.csv", prior=tiny_prior, eval_h5=eval_file, steps=1, progress=False
    )
    assert list(table.columns) == COLUMNS and len(table) == len(jobs)
    assert pd.read_csv(tmp_path / "p.csv").shape == table.shape
    patch = table[(table["mode"] == "patch") & (table["sweep"] == "inference_size")]
    assert set(patch["tiles_per_call"]) == {9}  # (16 / 8 + 1)^2 tiles of the shifted grid
    assert (table["seconds_per_call"] > 0).all() and (table["peak_mib"] >= 0).all()


def test_a_failing_profile_names_its_configuration(tmp_path, eval_file):  # noqa: F811
    jobs = profile_plan(["dps"], 16, ["whole"], [], 8)
    with pytest.raises(RuntimeError, match="profile .*'solver': 'dps'"):
        run_profiles(jobs, tmp_path / "p.csv", prior=tmp_path / "missing.pt", eval_h5=eval_file)
    assert not (tmp_path / "p.csv").exists()
