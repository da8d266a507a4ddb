"""Training the priors: schemes, resume, bad input, NaN, DDP, and a tiny quality check."""

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from patchpnp import runtime as runtime_module
from patchpnp.formats import append_split, create_split
from patchpnp.prior.loading import load_prior
from patchpnp.prior.spec import describe_mismatch, resolve_prior, result_hash
from patchpnp.runtime import autocast_dtype
from patchpnp.training import loop
from patchpnp.training.denoise_check import denoise_check
from patchpnp.training.images import ImageFiles
from patchpnp.training.loop import TrainingError, train_prior
from patchpnp.training.schemes import Scheme
from session_runs import background
from workflow_runner import TINY_NETWORK


def blobs(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random images in [0, 1]: a few Gaussian blobs each (easy to denoise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    out = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        for _ in range(3):
            cx, cy, w = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.2)
            out[i, 0] += rng.uniform(0.3, 0.7) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / w**2)
    return np.clip(out, 0, 1)


def write_split(path: Path, images: np.ndarray) -> Path:
    """A split file as extraction writes it, of ``images`` [n, 1, S, S]."""
    n, size = len(images), images.shape[-1]
    with h5py.File(path, "w") as f:
        create_split(f, size, {"split": "train"})
        names = [f"vol{i // 4}.h5" for i in range(n)]
        append_split(f, images[:, 0], names, np.arange(n) % 4, np.ones(n, np.float32))
    return path


def tiny_settings(scheme="whole", steps=6, **training):
    config = {
        "seed": 5,
        "data": {"image_size": 16},
        "network": copy.deepcopy(TINY_NETWORK),
        "training": {
            "batch_size": 4,
            "steps": steps,
            "lr_ref": 0.01,
            "ref_steps": 50,
            "warmup_steps": 2,
            "ema_sigma_rel": 0.1,
            "P_mean": -0.8,
            "P_std": 1.6,
            "checkpoint_every": 2,
            "processes": 1,
            "threads": 1,
            "max_memory_mb": 64,
            "precision": "float32",
            **training,
        },
        "priors": {"p": {"scheme": scheme, "train_patch": 8}},
    }
    if scheme == "padis":
        config["priors"]["p"].update(patch_sizes=[8, 16], patch_probs=[0.5, 0.5])
    return resolve_prior(config, "p")


def _two_splits(folder: Path) -> list[Path]:
    """The ``data`` fixture's two training splits, written into ``folder``."""
    return [
        write_split(folder / "a.h5", blobs(24, 16, 0)),
        write_split(folder / "b.h5", blobs(16, 16, 1)),
    ]


@pytest.fixture
def data(tmp_path):
    return _two_splits(tmp_path)


def weights(path):
    return torch.load(path, weights_only=False)["ema"]


# --- data and schemes ------------------------------------------------------------------


def test_lazy_reading_matches_memory(data):
    mem, lazy = ImageFiles(data, max_memory_mb=64), ImageFiles(data, max_memory_mb=0)
    assert mem.in_memory and not lazy.in_memory and len(mem) == 40
    idx = [39, 3, 3, 25, 0, 24]
    torch.testing.assert_close(mem.get(idx), lazy.get(idx), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["whole", "patch", "padis"])
def test_scheme_draws_are_deterministic_and_in_bounds(data, name):
    images = ImageFiles(data)
    scheme = Scheme(
        name,
        image_size=16,
        batch_size=4,
        train_patch=16 if name == "padis" else 8,
        patch_sizes=(8, 16) if name == "padis" else (),
        patch_probs=(0.5, 0.5) if name == "padis" else (),
    )
    x1, c1 = scheme.draw(images, seed=1, step=3)
    x2, c2 = scheme.draw(images, seed=1, step=3)
    torch.testing.assert_close(x1, x2, rtol=0, atol=0)
    if name == "whole":
        assert x1.shape == (4, 1, 16, 16) and c1 is None
    elif name == "patch":
        assert x1.shape == (4, 1, 8, 8) and c1 is None
        # every crop is a window of some training image
        full = images.get(range(len(images)))
        for crop in x1:
            windows = full.unfold(2, 8, 1).unfold(3, 8, 1)
            assert ((windows - crop[None, :, None, None]).abs().amax(dim=(-1, -2)) == 0).any()
    else:
        size = x1.shape[-1]
        assert x1.shape[0] == (8 if size == 8 else 4)  # batch grows as 1 / patch side
        assert c1.shape == (x1.shape[0], 2, size, size)
        assert c1.min() >= -1 and c1.max() <= 1  # crops lie on the padded canvas
    # a DDP rank takes its slice of the same global batch
    a0, _ = scheme.draw(images, 1, 3, rank=0, world=2)
    a1, _ = scheme.draw(images, 1, 3, rank=1, world=2)
    torch.testing.assert_close(torch.cat([a0, a1]), x1, rtol=0, atol=0)


def test_settings_merge_hash_and_mismatch():
    s = tiny_settings("patch", batch_size=8)
    assert s["scheme"] == {"name": "patch", "image_size": 16, "batch_size": 8, "train_patch": 8}
    t = copy.deepcopy(s)
    t["training"]["threads"] = 7
    t["training"]["checkpoint_every"] = 99
    assert result_hash(s) == result_hash(t)  # neither changes the trained weights
    t["network"]["model_channels"] = 16
    assert result_hash(s) != result_hash(t)
    assert describe_mismatch(s, t) == "network.model_channels: 8 -> 16"


def test_training_precision(monkeypatch, tmp_path, data, caplog):
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert autocast_dtype("float32", cpu) is None
    assert autocast_dtype("bfloat16", cpu) is torch.bfloat16  # asked for: emulated if need be
    for native in (True, False):
        monkeypatch.setattr(runtime_module, "cpu_has_native_bf16", lambda n=native: n)
        assert autocast_dtype("auto", cpu) is (torch.bfloat16 if native else None)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda n=native: n)
        assert autocast_dtype("auto", gpu) is (torch.bfloat16 if native else None)
    with pytest.raises(RuntimeError, match="does not support bfloat16"):
        autocast_dtype("bfloat16", gpu)
    with pytest.raises(ValueError, match="training.precision must be one of"):
        autocast_dtype("float16", cpu)

    # The loop applies it and says so in the log; the saved prior runs in float32.
    caplog.set_level("INFO", logger="patchpnp.training.loop")
    path = train_prior(tiny_settings(steps=2, precision="bfloat16"), data, tmp_path, progress=False)
    assert "precision bfloat16: the U-Net runs in bfloat16 autocast on cpu" in caplog.text
    denoiser, _ = load_prior(path)
    assert denoiser.precond.autocast_dtype is None
    # Inference takes the same policy from inference.precision, and names that key.
    denoiser, _ = load_prior(path, precision="bfloat16")
    assert denoiser.precond.autocast_dtype is torch.bfloat16
    monkeypatch.setattr(runtime_module, "cpu_has_native_bf16", lambda: False)
    assert load_prior(path, precision="auto")[0].precond.autocast_dtype is None
    with pytest.raises(ValueError, match="inference.precision must be one of"):
        load_prior(path, precision="half")
    # bfloat16 stays close to float32 on one denoiser call (the grid's check is the
    # measured 0.02 dB of config/README.md) and the output is float32.
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    sigma = torch.full((2,), 0.2)
    with torch.no_grad():
        full = load_prior(path)[0](x, sigma)
        half = load_prior(path, precision="bfloat16")[0](x, sigma)
    assert half.dtype is torch.float32
    assert (half - full).abs().max() < 0.05


# --- the loop -------------------------------------------------------------------------------


def test_outputs_and_log(tmp_path, data):
    out = tmp_path / "prior"
    path = train_prior(tiny_settings(), data, out, progress=False)
    assert path == out / "ema.pt"
    assert {p.name for p in out.iterdir()} == {
        "ema.pt",
        "settings.yaml",
        "train_log.csv",
        "loss.png",
    }
    rows = (out / "train_log.csv").read_text().splitlines()
    assert rows[0] == "step,loss,lr,images_per_s,seconds" and len(rows) == 7
    denoiser, settings = load_prior(path)
    assert settings["name"] == "p" and not any(p.requires_grad for p in denoiser.parameters())


# bfloat16 autocast (the demo's choice on a CPU that computes it) must resume as exactly.
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_resume_after_interruption_gives_identical_weights(tmp_path, data, monkeypatch, precision):
    settings = tiny_settings(steps=7, precision=precision)
    train_prior(settings, data, tmp_path / "straight", progress=False)

    # A crash at step 5 (0-based 4): the checkpoint of step 4 stays behind.
    original = Scheme.draw

    def crash(self, images, seed, step, rank=0, world=1):
        if step == 4:
            raise KeyboardInterrupt("killed")
        return original(self, images, seed, step, rank, world)

    monkeypatch.setattr(Scheme, "draw", crash)
    with pytest.raises(KeyboardInterrupt):
        train_prior(settings, data, tmp_path / "resumed", progress=False)
    states = list((tmp_path / "resumed").glob("state-*.pt"))
    assert len(states) == 1 and torch.load(states[0], weights_only=False)["step"] == 4
    assert not (tmp_path / "resumed" / "ema.pt").exists()
    monkeypatch.setattr(Scheme, "draw", original)
    train_prior(settings, data, tmp_path / "resumed", progress=False)

    a, b = weights(tmp_path / "straight" / "ema.pt"), weights(tmp_path / "resumed" / "ema.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    log = (tmp_path / "resumed" / "train_log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log[1:]] == [str(i) for i in range(1, 8)]
    assert not list((tmp_path / "resumed").glob("state-*.pt"))  # removed when done


def test_stop_after_then_rerun(tmp_path, data):
    settings = tiny_settings(steps=5)
    train_prior(settings, data, tmp_path / "a", progress=False, stop_after=3)
    train_prior(settings, data, tmp_path / "a", progress=False)
    train_prior(settings, data, tmp_path / "b", progress=False)
    a, b = weights(tmp_path / "a" / "ema.pt"), weights(tmp_path / "b" / "ema.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_of_other_settings_is_refused(tmp_path, data):
    settings = tiny_settings(steps=4)
    state = train_prior(settings, data, tmp_path / "a", progress=False, stop_after=2)
    other = copy.deepcopy(settings)
    other["network"]["model_channels"] = 12
    other["training"]["lr_ref"] = 0.02
    with pytest.raises(
        TrainingError,
        match=r"other settings: network.model_channels: 8 -> 12; "
        r"training.lr_ref: 0.01 -> 0.02",
    ):
        train_prior(other, data, tmp_path / "b", progress=False, resume=state)
    done = train_prior(settings, data, tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match=r"another architecture: network.model_channels: 8 -> 12"):
        load_prior(done, expect=other["network"])


def test_too_few_images_or_too_small_images_are_refused(tmp_path):
    few = [write_split(tmp_path / "few.h5", blobs(3, 16))]
    with pytest.raises(TrainingError, match=r"holds 3 images \(3 distinct 16-px samples\), "
                       r"fewer than one batch \(4\)"):  # fmt: skip
        train_prior(tiny_settings(), few, tmp_path / "x", progress=False)
    # patches are drawn with replacement: 3 images x 9 x 9 corners of an 8-px patch
    # fill a batch of 8 (a patch prior on a few slices)
    settings = tiny_settings("patch", steps=1, batch_size=8)
    assert settings["scheme"]["train_patch"] == 8 and settings["scheme"]["batch_size"] == 8
    assert (train_prior(settings, few, tmp_path / "y", progress=False)).is_file()
    small = [write_split(tmp_path / "small.h5", blobs(8, 8))]
    settings = tiny_settings("patch")
    settings["scheme"]["image_size"] = 8
    settings["scheme"]["train_patch"] = 16
    with pytest.raises(ValueError, match="training patch 16 is larger than the training images"):
        train_prior(settings, small, tmp_path / "y", progress=False)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_nan_loss_stops_with_step_and_keeps_last_checkpoint(tmp_path, data, monkeypatch):
    original = loop.EDM2Loss.__call__
    calls = {"n": 0}

    def poisoned(self, net, images, generator, coords=None):
        calls["n"] += 1
        out = original(self, net, images, generator, coords)
        return out * float("nan") if calls["n"] == 4 else out

    monkeypatch.setattr(loop.EDM2Loss, "__call__", poisoned)
    with pytest.raises(
        TrainingError,
        match=r"loss is nan at step 4; .*last good checkpoint "
        r"\(step 2\)",
    ):
        train_prior(tiny_settings(steps=6), data, tmp_path / "p", progress=False)
    states = list((tmp_path / "p").glob("state-*.pt"))
    assert torch.load(states[0], weights_only=False)["step"] == 2


@background("ddp_training")
def _ddp_training(work: Path, env: dict) -> Path:
    """`patchpnp train` under torchrun: two CPU processes (gloo), four steps of 8 images."""
    data = _two_splits(work)
    settings = tiny_settings(steps=4, batch_size=8)
    env = dict(env, OMP_NUM_THREADS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "patchpnp.cli", "train", *map(str, data), "--out-dir", str(work / "ddp"),
        "--settings", json.dumps(settings), "--threads", "1", "--device", "cpu",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return work / "ddp"


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(ddp_training):
    """torchrun, gloo: two processes split each batch; one set of weights comes out."""
    log = (ddp_training / "train_log.csv").read_text().splitlines()
    assert len(log) == 5
    ips = [float(r.split(",")[3]) for r in log[1:]]
    assert all(v > 0 for v in ips)
    denoiser, _ = load_prior(ddp_training / "ema.pt")
    assert all(torch.isfinite(p).all() for p in denoiser.parameters())


@background("learning_training")
def _learning_training(work: Path, env: dict) -> Path:
    """`patchpnp train`: 150 steps of 16 blob images on 256 of them."""
    train = write_split(work / "train.h5", blobs(256, 16, 0))
    settings = tiny_settings(
        steps=150, batch_size=16, lr_ref=0.02, ref_steps=100, warmup_steps=10, checkpoint_every=1000
    )
    cmd = [
        sys.executable, "-m", "patchpnp.cli", "train", str(train), "--out-dir", str(work / "p"),
        "--settings", json.dumps(settings), "--threads", "1", "--device", "cpu",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return work / "p" / "ema.pt"


@pytest.mark.slow
def test_tiny_prior_learns_to_denoise(learning_training, tmp_path):
    """A loose quality bar: one call beats the noisy input at every sigma."""
    evals = [write_split(tmp_path / "eval.h5", blobs(32, 16, 99))]
    table = denoise_check(learning_training, evals, sigmas=(0.05, 0.1, 0.2))
    assert (table["gain_db"] > 3.0).all(), table


def test_denoise_check_noise_is_per_image_and_averaged_over_draws(tmp_path):
    """Each image's noise is its own (file, index, sigma, draw): the table does not
    depend on the order of the files; several draws give a standard error, one gives 0."""
    train = [write_split(tmp_path / "train.h5", blobs(16, 16, 0))]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    evals = [
        write_split(tmp_path / "a" / "eval.h5", blobs(5, 16, 1)),
        write_split(tmp_path / "b" / "eval.h5", blobs(3, 16, 2)),
    ]
    prior = train_prior(tiny_settings(steps=2), train, tmp_path / "p", progress=False, threads=1)
    kw = dict(sigmas=(0.05, 0.2), seed=3, draws=3)
    forward, backward = denoise_check(prior, evals, **kw), denoise_check(prior, evals[::-1], **kw)
    cols = ["psnr_noisy", "psnr_denoised", "gain_db", "gain_db_se"]
    np.testing.assert_allclose(forward[cols].to_numpy(), backward[cols].to_numpy(), atol=1e-5)
    assert (forward["draws"] == 3).all() and (forward["images"] == 8).all()
    assert (forward["gain_db_se"] > 0).all()
    one = denoise_check(prior, evals, sigmas=(0.05, 0.2), seed=3, draws=1)
    assert (one["gain_db_se"] == 0).all()
    assert not np.allclose(one["psnr_noisy"], forward["psnr_noisy"])  # other draws were added
    other_seed = denoise_check(prior, evals, sigmas=(0.05, 0.2), seed=4, draws=1)
    assert not np.allclose(one["psnr_noisy"], other_seed["psnr_noisy"])
    with pytest.raises(ValueError, match="draws"):
        denoise_check(prior, evals, draws=0)


KILLED_TRAINING = {"steps": 60, "checkpoint_every": 5}


@background("killed_training")
def _killed_training(work: Path, env: dict) -> dict:
    """SIGKILL to a running `patchpnp train` once it has checkpointed step 10 or later,
    then the same command again."""
    data = _two_splits(work)
    settings = tiny_settings(**KILLED_TRAINING)
    env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"}
    out = work / "killed"
    command = [
        "patchpnp", "train", *map(str, data), "--out-dir", str(out),
        "--settings", json.dumps(settings), "--threads", "1", "--device", "cpu",
    ]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    step = 0
    while time.monotonic() < deadline and proc.poll() is None and step < 10:
        for state in out.glob("state-*.pt"):
            try:
                step = torch.load(state, weights_only=False)["step"]
            except Exception:  # being replaced at this instant
                pass
        time.sleep(0.05)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_before_the_end = alive and not (out / "ema.pt").exists()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    return {"data": data, "out": out, "killed": killed_before_the_end, "again": again}


@pytest.mark.slow
def test_training_killed_outright_resumes_from_its_checkpoint(killed_training, tmp_path):
    """SIGKILL to a running `patchpnp train` (no chance to clean up), then the same
    command again: it resumes from the last checkpoint and ends with the weights of
    an uninterrupted run."""
    run, out = killed_training, killed_training["out"]
    assert run["killed"], "training ended before it could be killed"
    again = run["again"]
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = re.search(r"resuming from \S+ at step (\d+)", again.stderr)
    assert resumed and 10 <= int(resumed.group(1)) < 60, again.stderr[-2000:]

    settings = tiny_settings(**KILLED_TRAINING)
    threads = torch.get_num_threads()
    try:  # the same thread count as the command, so the same floating-point sums
        train_prior(settings, run["data"], tmp_path / "straight", progress=False, threads=1)
    finally:
        torch.set_num_threads(threads)
    a, b = weights(tmp_path / "straight" / "ema.pt"), weights(out / "ema.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    steps = [r.split(",")[0] for r in (out / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == [str(i) for i in range(1, 61)]


def test_training_speed_benchmark_times_real_steps():
    from patchpnp.tools import bench_training

    settings = tiny_settings(scheme="patch")
    threads = torch.get_num_threads()
    try:
        out = bench_training._worker(
            settings, 1, channels_last=True, bf16=True, compiled=False, batch=4, steps=2, warmup=1
        )
    finally:
        torch.set_num_threads(threads)
    assert out["side"] == settings["scheme"]["train_patch"]
    assert out["images_per_s"] == pytest.approx(4 / out["seconds_per_step"])
    assert 0 < out["seconds_per_step"] < 30
