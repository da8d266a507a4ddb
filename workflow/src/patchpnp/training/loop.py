"""The training loop: EDM2 loss, Adam, power EMA, checkpoints, resume, DDP.

One function, :func:`train_prior`, trains one prior from resolved settings
(see :func:`patchpnp.prior.spec.resolve_prior`) and writes to its
folder::

    ema.pt            the EMA weights and everything needed to rebuild the network
    settings.yaml     the resolved settings it was trained with
    train_log.csv     one row per step: loss, learning rate, images/s, seconds
    loss.png          the loss curve
    state-<hash>.pt   the training state while training (removed at the end)

Resume: the state (network, optimiser, EMA, step, RNG) is written atomically
every ``checkpoint_every`` steps, named by a hash of the settings that decide
the result. Rerunning the same command continues from it; because each step's
random draws depend only on ``(seed, step)`` the resumed run ends with the same
weights as an uninterrupted one (on the CPU).

Several processes: launch with ``torchrun --nproc-per-node N patchpnp train
...``; each process takes its slice of every global batch and DDP averages the
gradients (NCCL on GPUs, gloo on the CPU).
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from patchpnp.atomic import atomic_path
from patchpnp.errors import PatchpnpError
from patchpnp.prior import EDM2Loss, PowerEMA, learning_rate
from patchpnp.prior.loading import build_network, size_multiple
from patchpnp.prior.spec import describe_mismatch, resolve_prior, result_hash
from patchpnp.runtime import autocast_dtype, start_processes, use_threads
from patchpnp.training.images import ImageFiles
from patchpnp.training.schemes import Scheme, step_generator

log = logging.getLogger(__name__)
LOG_FIELDS = ("step", "loss", "lr", "images_per_s", "seconds")


class TrainingError(PatchpnpError, RuntimeError):
    """Training cannot go on (bad data, diverged loss); the message says why and where."""


def _check_data(images: ImageFiles, scheme: Scheme, settings: dict) -> None:
    c, h, w = images.shape
    net = settings["network"]
    if c != net["img_channels"]:
        raise TrainingError(
            f"training images have {c} channel(s) but network.img_channels is {net['img_channels']}"
        )
    if h != w or h != scheme.image_size:
        raise TrainingError(f"training images are {h} x {w}, expected {scheme.image_size} square")
    for p in scheme.sizes:
        if p > h:
            raise TrainingError(f"training patch {p} is larger than the {h} x {w} training images")
        multiple = size_multiple(net)
        if p % multiple:
            raise TrainingError(
                f"training size {p} is not a multiple of {multiple}, which the network's "
                f"{len(net['channel_mult'])} levels need"
            )
    # A step draws its patches with replacement (image and corner), so a batch may hold
    # more patches than there are images (a patch prior on a few slices: snakemake
    # generalization); it needs as many distinct samples, images x patch positions.
    for p in scheme.sizes:
        samples = len(images) * (scheme.canvas - p + 1) ** 2
        if samples < scheme.batch_for(p):
            raise TrainingError(
                f"the training set holds {len(images)} images ({samples} distinct {p}-px "
                f"samples), fewer than one batch ({scheme.batch_for(p)})"
            )


def _save_state(path: Path, net, opt, ema, step: int, settings: dict, digest: str) -> None:
    state = {
        "step": step,
        "hash": digest,
        "settings": settings,
        "net": net.state_dict(),
        "optimizer": opt.state_dict(),
        "ema": ema.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path, settings: dict) -> dict:
    """Read a training state and refuse it if it was made with other settings."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    mismatch = describe_mismatch(state.get("settings", {}), settings)
    if mismatch:
        raise TrainingError(f"{path}: checkpoint was made with other settings: {mismatch}")
    return state


def _read_log(path: Path, upto: int) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["step"]) <= upto]


def train_prior(
    settings: dict,
    data: list[str | Path],
    out_dir: str | Path,
    *,
    threads: int | None = None,
    device: str = "auto",
    resume: str | Path | None = "auto",
    progress: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Train one prior; return the path of its EMA weights.

    ``resume``: ``"auto"`` continues from this folder's state for the same
    settings if there is one; a path resumes from that state (refused if made
    with other settings); ``None`` starts afresh. ``stop_after`` ends the run
    after that many steps of this invocation (to test resuming).
    """
    out_dir = Path(out_dir)
    use_threads(threads)
    rank, world, dev = start_processes(device)
    scheme = Scheme(**settings["scheme"])
    tr = settings["training"]
    digest = result_hash(settings)
    state_path = out_dir / f"state-{digest}.pt"

    images = ImageFiles(data, max_memory_mb=tr["max_memory_mb"])
    _check_data(images, scheme, settings)
    log.info(
        "training prior '%s' (%s) on %d images from %d file(s)%s",
        settings["name"],
        scheme.name,
        len(images),
        len(data),
        "" if images.in_memory else ", read lazily",
    )

    # channels_last: mkldnn's convolutions (CPU) and cuDNN's run 10-20% faster in it.
    net = build_network(settings["network"], seed=settings["seed"])
    net = net.to(dev, memory_format=torch.channels_last).train()
    net.autocast_dtype = autocast_dtype(tr["precision"], dev)
    log.info(
        "precision %s: the U-Net runs in %s on %s",
        tr["precision"],
        "float32" if net.autocast_dtype is None else "bfloat16 autocast",
        dev,
    )
    opt = torch.optim.Adam(net.parameters(), lr=tr["lr_ref"], betas=(0.9, 0.99), eps=1e-8)
    ema = PowerEMA(net, sigma_rel=tr["ema_sigma_rel"])
    loss_fn = EDM2Loss(P_mean=tr["P_mean"], P_std=tr["P_std"])
    start = 0

    if resume == "auto":
        for stale in out_dir.glob("state-*.pt"):
            if stale != state_path and rank == 0:
                old = torch.load(stale, map_location="cpu", weights_only=False).get("settings", {})
                log.info(
                    "removing %s: made with other settings (%s)",
                    stale,
                    describe_mismatch(old, settings),
                )
                stale.unlink()
        resume = state_path if state_path.exists() else None
    if resume is not None:
        state = load_state(Path(resume), settings)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["optimizer"])
        ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start = int(state["step"])
        log.info("resuming from %s at step %d", resume, start)

    model = net
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[dev.index] if dev.type == "cuda" else None
        )

    total = tr["steps"]
    end = total if stop_after is None else min(total, start + stop_after)
    rows = _read_log(out_dir / "train_log.csv", start) if rank == 0 else []
    last_good = start
    bar = tqdm(
        range(start, end),
        initial=start,
        total=total,
        desc=f"train {settings['name']}",
        unit="step",
        disable=not progress or rank != 0,
        mininterval=0.5 if sys.stderr.isatty() else 15,
    )  # a log file gets a line per 15 s
    t_prev = time.perf_counter()
    for step in bar:
        x, coords = scheme.draw(images, settings["seed"], step, rank, world)
        x = (x.to(dev) * 2 - 1).contiguous(memory_format=torch.channels_last)  # network units
        coords = coords.to(dev) if coords is not None else None
        g = step_generator(settings["seed"], step, stream=1 + rank)
        loss = loss_fn(model, x, coords=coords, generator=g).mean()
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss is {loss.item()} at step {step + 1}; stopping. The last good "
                f"checkpoint (step {last_good}) is kept at {state_path}"
            )
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, tr["lr_ref"], tr["ref_steps"], tr["warmup_steps"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(net, step + 1)

        now = time.perf_counter()
        seconds = now - t_prev
        t_prev = now
        ips = x.shape[0] * world / max(seconds, 1e-9)
        if rank == 0:
            rows.append(
                {
                    "step": step + 1,
                    "loss": f"{loss.item():.6f}",
                    "lr": f"{opt.param_groups[0]['lr']:.6g}",
                    "images_per_s": f"{ips:.2f}",
                    "seconds": f"{seconds:.4f}",
                }
            )
            bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{ips:.1f}", refresh=False)
        done = step + 1
        if done % tr["checkpoint_every"] == 0 or done == end:
            if rank == 0:
                _save_state(state_path, net, opt, ema, done, settings, digest)
                _write_log(out_dir / "train_log.csv", rows)
            last_good = done
            if world > 1:
                dist.barrier()
    bar.close()
    images.close()
    if end < total:
        log.info("stopped after step %d of %d; rerun to continue", end, total)
        return state_path
    ema_path = out_dir / "ema.pt"
    if rank == 0:
        _write_outputs(out_dir, ema, settings, digest, rows)
        state_path.unlink(missing_ok=True)
    if world > 1:
        dist.barrier()
    return ema_path


def _write_log(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def _write_outputs(out_dir: Path, ema: PowerEMA, settings: dict, digest: str, rows) -> None:
    _write_log(out_dir / "train_log.csv", rows)
    with atomic_path(out_dir / "settings.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(settings, sort_keys=False))
    _plot_loss(out_dir / "loss.png", rows, settings["name"])
    payload = {
        "settings": settings,
        "hash": digest,
        "step": ema.step,
        "ema": ema.model.state_dict(),
    }
    with atomic_path(out_dir / "ema.pt") as tmp:
        torch.save(payload, tmp)


def _plot_loss(path: Path, rows: list[dict], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(r["step"]) for r in rows]
    loss = torch.tensor([float(r["loss"]) for r in rows])
    k = max(1, len(rows) // 50)
    smooth = (
        torch.nn.functional.avg_pool1d(loss[None, None], k, 1, padding=0)[0, 0]
        if len(rows) >= k
        else loss
    )
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, loss.numpy(), lw=0.5, alpha=0.4, label="per step")
    ax.plot(steps[k - 1 :], smooth.numpy(), lw=1.5, label=f"mean of {k}")
    ax.set(xlabel="step", ylabel="EDM2 loss (with learned uncertainty)", title=f"prior: {name}")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def train_command(
    data: list[str],
    out_dir: str,
    *,
    settings: str | None = None,
    settings_file: str | None = None,
    config: str | None = None,
    prior: str | None = None,
    threads: int | None = None,
    device: str = "auto",
    resume: str = "auto",
    stop_after: int | None = None,
) -> None:
    """``patchpnp train``: resolve the settings, then :func:`train_prior`."""
    resolved = settings_from_options(settings, settings_file, config, prior)
    resume_from = {"auto": "auto", "never": None}.get(resume, resume)
    train_prior(
        resolved, data, out_dir, threads=threads, device=device, resume=resume_from,
        stop_after=stop_after,
    )  # fmt: skip


def settings_from_options(
    settings: str | None = None,
    settings_file: str | None = None,
    config: str | None = None,
    prior: str | None = None,
) -> dict:
    """A prior's resolved settings from the ``train`` command's options: JSON (what the
    workflow passes), a YAML file, or a workflow config and the prior's name in it."""
    import yaml

    if settings:
        return json.loads(settings)
    if settings_file:
        with open(settings_file) as f:
            return yaml.safe_load(f)
    if not config or not prior:
        raise ValueError("give --settings, --settings-file, or --config with --prior")
    from patchpnp.pipeline.config import load_config

    loaded = load_config(config)
    if prior not in loaded["priors"]:
        raise ValueError(f"prior '{prior}' is not in {config}: {list(loaded['priors'])}")
    return resolve_prior(loaded, prior)
