"""GPU paths, tested for their logic on a machine without one (mocks stand in for CUDA).

Device selection (``device: auto`` and ``cuda``), torchrun's process set-up, the
one-line out-of-memory error and its contract with the rules, and ``device: cuda``
refused before any job. The CUDA memory statistics of the profiles are tested in
``test_profiling.py`` (allocator counters) and ``test_paper_scale.py`` (device
capacity); bf16 support in ``test_training.py::test_training_precision``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from patchpnp import cli, runtime
from patchpnp.pipeline.out_of_memory import KNOBS, RULE_VARIABLE, out_of_memory_message
from patchpnp.runtime import DeviceError, select_device, start_processes
from test_inference import eval_file, tiny_prior  # noqa: F401  (fixtures)
from test_training import blobs, tiny_settings, write_split

REPO = Path(__file__).resolve().parents[1]

# torch's own message, as a CUDA allocation failure prints it
CUDA_OOM = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
    "79.10 GiB of which 1.05 GiB is free. Including non-PyTorch memory, this process "
    "has 78.04 GiB memory in use. Of the allocated memory 75.50 GiB is allocated by "
    "PyTorch, and 1.98 GiB is reserved by PyTorch but unallocated. If reserved but "
    "unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"
)


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine that says it has two CUDA GPUs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_device_selection(monkeypatch):
    assert select_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceError, match=r"inference.device 'cuda' asks for a CUDA GPU, but"):
        select_device("cuda", key="inference.device")
    with pytest.raises(DeviceError, match="auto, cpu or cuda"):
        select_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("auto") == torch.device("cuda", 0)
    assert select_device("cuda", local_rank=3) == torch.device("cuda", 1)


def test_what_was_found_is_said(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert runtime.cuda_found().endswith("sees no CUDA GPU; CUDA_VISIBLE_DEVICES=''")
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "is a CPU-only build" in runtime.cuda_found()


class _Calls(list):
    def record(self, name):
        return lambda *args, **kwargs: self.append((name, args, kwargs))


def _torchrun(monkeypatch, rank, world, local_rank):
    for key, value in (("RANK", rank), ("WORLD_SIZE", world), ("LOCAL_RANK", local_rank)):
        monkeypatch.setenv(key, str(value))
    calls = _Calls()
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", calls.record("init_process_group"))
    monkeypatch.setattr(torch.cuda, "set_device", calls.record("set_device"))
    return calls


def test_torchrun_processes_take_their_local_gpu_before_nccl(monkeypatch, two_gpus):
    """Global rank 3 on its node's second GPU: the local rank picks the GPU (the global
    rank would pick GPU 1 only by luck), and the GPU is current before NCCL starts."""
    calls = _torchrun(monkeypatch, rank=2, world=4, local_rank=0)
    assert start_processes("auto") == (2, 4, torch.device("cuda", 0))
    assert calls == [
        ("set_device", (torch.device("cuda", 0),), {}),
        ("init_process_group", ("nccl",), {"device_id": torch.device("cuda", 0)}),
    ]


def test_torchrun_on_cpus_uses_gloo(monkeypatch, two_gpus):
    calls = _torchrun(monkeypatch, rank=1, world=2, local_rank=1)
    assert start_processes("cpu") == (1, 2, torch.device("cpu"))
    assert calls == [("init_process_group", ("gloo",), {})]


def test_one_process_starts_no_group(monkeypatch, two_gpus):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    calls = _torchrun(monkeypatch, 0, 1, 0)
    monkeypatch.delenv("WORLD_SIZE")
    assert start_processes("auto") == (0, 1, torch.device("cuda", 0))
    assert calls == []


# -- out of memory --------------------------------------------------------------------


def test_the_message_is_one_line_with_the_rule_and_the_knob():
    line = out_of_memory_message(
        "infer", torch.cuda.OutOfMemoryError(CUDA_OOM), {RULE_VARIABLE: "infer_cell"}
    )
    assert "\n" not in line
    assert line.startswith("rule infer_cell ran out of GPU memory (tried to allocate 2.00 GiB")
    assert "on GPU 0 of 79.10 GiB" in line and "inference.patch_batch" in line
    assert "inference.memory_budget" in line
    line = out_of_memory_message("train", torch.cuda.OutOfMemoryError("CUDA out of memory."), {})
    assert line.startswith("patchpnp train ran out of GPU memory (CUDA out of memory")
    assert "training.batch_size" in line


def _raise_oom(*args, **kwargs):
    raise torch.cuda.OutOfMemoryError(CUDA_OOM)


def _no_outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _error_line(stderr: str) -> str:
    """The command's error: one line, after whatever progress bars drew, no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if line.startswith("patchpnp ")]
    assert len(lines) == 1 and stderr.strip().endswith(lines[0]), stderr
    return lines[0]


def test_a_cell_out_of_memory_fails_in_one_line_and_writes_nothing(
    tmp_path,
    monkeypatch,
    capsys,
    eval_file,  # noqa: F811
    tiny_prior,  # noqa: F811
):
    from patchpnp.solvers.base import DiffusionSolver

    monkeypatch.setattr(DiffusionSolver, "solve", _raise_oom)
    monkeypatch.setenv(RULE_VARIABLE, "solvers_cell")
    out = tmp_path / "cell"
    out.mkdir()
    params = json.dumps({"steps": 2, "lam": 1.0, "zeta": 0.3, "sigma_start": 0.3})
    argv = ["infer", str(eval_file), "--recon", str(out / "r.h5"), "--metrics"]
    argv += [str(out / "m.csv"), "--task", "sr", "--task-params", '{"sigma_n": 0.025}']
    argv += ["--solver", "diffpir", "--solver-params", params, "--prior", str(tiny_prior)]
    argv += ["--lpips-mode", "off"]
    assert cli.main(argv) == 2
    err = _error_line(capsys.readouterr().err)
    assert err.startswith("patchpnp infer: error: rule solvers_cell ran out of GPU memory")
    assert "lower inference.patch_batch" in err
    assert _no_outputs(out) == []


def test_training_out_of_memory_names_the_batch_size(tmp_path, monkeypatch, capsys):
    from patchpnp.prior.loss import EDM2Loss

    data = write_split(tmp_path / "train.h5", blobs(8, 16))
    monkeypatch.setattr(EDM2Loss, "__call__", _raise_oom)
    monkeypatch.setenv(RULE_VARIABLE, "train_prior")
    settings = json.dumps(tiny_settings(steps=2))
    argv = ["train", str(data), "--out-dir", str(tmp_path / "p"), "--settings", settings]
    assert cli.main([*argv, "--device", "cpu"]) == 2
    err = _error_line(capsys.readouterr().err)
    assert "rule train_prior ran out of GPU memory" in err and "training.batch_size" in err
    assert not (tmp_path / "p" / "ema.pt").exists()


def test_other_errors_still_raise(monkeypatch):
    monkeypatch.setattr(cli, "call", lambda *a: (_ for _ in ()).throw(KeyError("x")))
    with pytest.raises(KeyError):
        cli.main(["check-config", "config/config.yaml"])


def _rule_blocks() -> dict[str, str]:
    """Each rule's text in workflow/rules, by name (``use rule`` ones included)."""
    blocks = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"(?m)^(?=rule |use rule )", path.read_text()):
            m = re.match(r"(?:rule (\w+):|use rule (\w+) as (\w+) with:)", block)
            if m:
                blocks[m[1] or m[3]] = block
    return blocks


def test_every_gpu_rule_names_itself_to_a_command_with_a_knob():
    blocks = _rule_blocks()
    gpu_rules = {name for name, text in blocks.items() if "gpu=" in text}
    derived = {
        m[2]
        for text in blocks.values()
        if (m := re.match(r"use rule (\w+) as (\w+)", text)) and m[1] in gpu_rules
    }
    assert {"infer_cell", "train_prior", "mri_cell"} <= gpu_rules and "seeds_cell" in derived
    for name in gpu_rules | derived:
        assert f'rule="{name}",' in blocks[name], f"rule {name}: params needs rule={name!r}"
    for name in gpu_rules - derived:  # a derived rule runs its parent's shell
        shell = blocks[name].split("shell:", 1)[1]
        m = re.match(
            rf'\s*"{RULE_VARIABLE}={{params.rule}} (?:patchpnp|{{params.launcher}}) ([\w-]+)', shell
        )
        assert m, f"rule {name}: its shell must start with {RULE_VARIABLE}={{params.rule}}"
        assert m[1] in KNOBS, f"rule {name} runs `patchpnp {m[1]}`, which has no knob in KNOBS"


@pytest.mark.slow
# Snakemake in the repository folder: one worker runs every such test (pytest-xdist)
@pytest.mark.xdist_group("repository_folder")
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_stops_the_workflow_before_any_job():
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--config", "device=cuda"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "config key 'device' 'cuda' asks for a CUDA GPU, but torch" in out
    assert "Job stats" not in out  # no job was planned


# -- snakemake gpu_check --------------------------------------------------------------


def test_gpu_check_stops_at_once_without_a_gpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "check"
    out.mkdir()
    argv = ["gpu-check", "--config", str(tmp_path / "not-read.yaml")]  # stops before reading
    argv += ["--output", str(out / "c.csv"), "--summary", str(out / "c.md")]
    assert cli.main(argv) == 2
    err = _error_line(capsys.readouterr().err)
    assert "gpu_check runs every kind of job on a CUDA GPU, but torch" in err
    assert _no_outputs(out) == []


def test_gpu_check_cells_cover_the_paper_grid():
    import yaml
    from patchpnp.evaluation.gpu_check import _cell_kinds

    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    cells = _cell_kinds(paper)
    solvers, sizes = paper["inference"]["solvers"], paper["inference"]["sizes"]
    assert [(s, z) for _, s, z, p in cells if p == "reflect"] == [
        (s, z) for s in solvers for z in sizes
    ]
    assert [(z, p) for _, _, z, p in cells if p == "zeros"] == [(64, "zeros")]


@pytest.mark.slow
def test_gpu_check_logic_runs_on_the_cpu(tmp_path):
    """Every kind of job of the check, on the CPU with the tiny config; the comparison of
    two runs on one device agrees exactly, and a disagreement fails after the report."""
    from patchpnp.evaluation.gpu_check import GpuCheckError, run_gpu_check
    from workflow_runner import tiny_mri_config

    config = tiny_mri_config()
    config["training"]["processes"] = 2  # the paper trains on several GPUs per prior
    csv, md = tmp_path / "check.csv", tmp_path / "check.md"
    with pytest.raises(GpuCheckError, match=r"largest \|PSNR difference\| 0.0000 dB"):
        run_gpu_check(config, csv, md, steps=1, images=1, tolerance_db=-1.0, device="cpu")
    import pandas as pd

    table = pd.read_csv(csv)
    kinds = table.groupby("kind", sort=False).size().to_dict()
    n_grid = len(config["inference"]["solvers"]) * len(config["inference"]["sizes"]) + 1
    assert kinds == {
        "train": len(config["priors"]) + 1,  # the grid's priors and the MRI prior
        "grid": n_grid,
        "deepinv": len(config["solvers"]["deepinv"]),
        "posterior": 1,
        "mri": 2,
        "cuda vs cpu": 2,
    }
    assert table["seconds"].gt(0).all()
    batch = config["training"]["batch_size"] // 2  # one GPU's share of the batch
    assert (table.loc[table["kind"] == "train", "note"] == f"2 steps, {batch} images per GPU").all()
    assert table.loc[table["kind"].isin(["grid", "mri"]), "psnr"].notna().all()
    assert "DISAGREE" in md.read_text()
