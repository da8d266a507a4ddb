"""The ``patchpnp`` command: every workflow step, runnable without Snakemake.

Snakemake's rules call these subcommands and hold no science themselves.
Errors in the input (bad files, bad settings) end the command with exit status
2 and one line naming the file or key; nothing partial is left behind.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("patchpnp")


def _cmd_demo(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from patchpnp.data.demo import DemoVolumeSpec, folder_stream, write_volume

    out = Path(args.out_dir)
    stream = folder_stream(out.name)
    roles = ["train"] * args.train + ["eval"] * args.eval + ["tune"] * args.tune
    if not roles:
        raise ValueError("nothing to build: give --train, --eval or --tune counts")
    counters = {"train": 0, "eval": 0, "tune": 0}
    for i, role in enumerate(tqdm(roles, desc=f"demo {out.name}", unit="vol")):
        spec = DemoVolumeSpec(
            role=role,
            layout=args.layout,
            index=counters[role],
            seed=args.seed,
            stream=stream,
            recon_size=args.recon_size,
            n_slices=args.train_slices if role == "train" else args.eval_slices,
            edge_slices=args.edge_slices if role == "train" else 0,
            coils=args.coils,
            readout_oversampling=args.readout_oversampling,
            noise=args.noise,
        )
        counters[role] += 1
        write_volume(spec, out / f"file_mni_{i:04d}.h5", train_slices=args.train_slices)
    log.info("wrote %d %s demo volumes to %s", len(roles), args.layout, out)


def _cmd_extract(args: argparse.Namespace) -> None:
    from patchpnp.data.extract import extract_volumes

    extract_volumes(
        args.volumes,
        args.split,
        args.output,
        image_size=args.image_size,
        crop_size=args.crop_size,
        edge_slices=args.edge_slices,
        scale_percentile=args.scale_percentile,
        layout=args.layout,
        root=args.root,
    )


def _cmd_merge(args: argparse.Namespace) -> None:
    from patchpnp.data.extract import merge_shards

    merge_shards(args.shards, args.output)


def _cmd_train(args: argparse.Namespace) -> None:
    import json

    import yaml

    from patchpnp.training.loop import train_prior
    from patchpnp.training.spec import resolve_prior

    if args.settings:
        settings = json.loads(args.settings)
    elif args.settings_file:
        settings = yaml.safe_load(Path(args.settings_file).read_text())
    else:
        from patchpnp.pipeline.config import load_config

        if not args.config or not args.prior:
            raise ValueError("give --settings, --settings-file, or --config with --prior")
        config = load_config(args.config)
        if args.prior not in config["priors"]:
            raise ValueError(
                f"prior '{args.prior}' is not in {args.config}: {list(config['priors'])}"
            )
        settings = resolve_prior(config, args.prior)
    resume = {"auto": "auto", "never": None}.get(args.resume, args.resume)
    train_prior(
        settings,
        args.data,
        args.out_dir,
        threads=args.threads,
        device=args.device,
        resume=resume,
        stop_after=args.stop_after,
    )


def _cmd_denoise_check(args: argparse.Namespace) -> None:
    from patchpnp.training.denoise_check import denoise_check

    table = denoise_check(
        args.prior,
        args.data,
        args.sigmas,
        seed=args.seed,
        tile=args.tile,
        padding=args.padding,
        device=args.device,
        threads=args.threads,
        draws=args.draws,
    )
    if args.output:
        table.to_csv(args.output, index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


def _cmd_infer(args: argparse.Namespace) -> None:
    import json

    from patchpnp.inference.cell import run_cell

    size = args.size if args.size == "whole" else int(args.size)
    run_cell(
        args.data,
        args.recon,
        args.metrics,
        task=args.task,
        task_params=json.loads(args.task_params),
        solver=args.solver,
        solver_params=json.loads(args.solver_params),
        prior=args.prior,
        size=size,
        padding=args.padding,
        patch_batch=args.patch_batch,
        batch_images=args.batch_images,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        limit=args.limit,
        **({} if args.band is None else {"band": args.band}),
    )


def _cmd_crosscheck(args: argparse.Namespace) -> None:
    import json

    from patchpnp.tools.crosscheck import require_deepinv, run_crosscheck

    require_deepinv()  # fail first, with the install command, if the extra is missing
    task_params, solver_params, seed = {}, {}, args.seed
    if args.config:
        from patchpnp.pipeline.config import load_config
        from patchpnp.pipeline.plan import Plan

        config = load_config(args.config)
        if args.task not in config["inference"]["tasks"]:
            raise ValueError(f"task '{args.task}' is not in {args.config}")
        name = args.prior_name or Path(args.prior).parent.name
        task_params = dict(config["inference"]["tasks"][args.task])
        solver_params = Plan(config).solver_params("diffpir", args.task, name)
        seed = config["seed"] if seed is None else seed
    task_params.update(json.loads(args.task_params))
    solver_params.update(json.loads(args.solver_params))
    table, summary = run_crosscheck(
        args.prior,
        args.data,
        task=args.task,
        task_params=task_params,
        solver_params=solver_params,
        limit=args.limit,
        seed=0 if seed is None else seed,
        start=args.start,
        physics=args.physics,
        device=args.device,
        threads=args.threads,
    )
    if args.output:
        table.to_csv(args.output, index=False)
    print(f"DiffPIR cross-check, task {args.task}: {task_params}, {solver_params}")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _cmd_tune(args: argparse.Namespace) -> None:
    import json

    from patchpnp.inference.tune import tune, write_tuning

    table, best = tune(
        args.data,
        prior=args.prior,
        solver=args.solver,
        task=args.task,
        task_params=json.loads(args.task_params),
        solver_params=json.loads(args.solver_params),
        seed=args.seed,
        batch_images=args.batch_images,
        threads=args.threads,
        device=args.device,
    )
    write_tuning(table, args.output)
    print(table.to_string(index=False))


def _cmd_tune_summary(args: argparse.Namespace) -> None:
    from patchpnp.inference.tune import summarise

    summarise(args.tables, args.output)
    print(Path(args.output).read_text())


def _cmd_tables(args: argparse.Namespace) -> None:
    from patchpnp.evaluation.aggregate import read_metrics, write_tables
    from patchpnp.evaluation.claims import claims_table, read_profiles, write_claims

    # The claims are computed first, so an error in either stops before any file is written.
    metrics = read_metrics(args.metrics)
    claims = claims_table(
        metrics,
        read_profiles(args.profiles),
        seed=args.seed,
        margin_db=args.margin_db,
        whole_prior=args.whole_prior,
        patch_prior=args.patch_prior,
        profile_prior=args.profile_prior,
    )
    written = write_tables(metrics, args.out_dir, args.seed, tuple(args.image_shape))
    written |= write_claims(claims, args.out_dir, args.margin_db)
    print(Path(written["table1.md"]).read_text())
    print(Path(written["claims.md"]).read_text())


def _cmd_profile(args: argparse.Namespace) -> None:
    from patchpnp.evaluation.profiling import profile_plan, run_profiles

    sizes = [s if s == "whole" else int(s) for s in args.sizes]
    jobs = profile_plan(args.solvers, args.image_size, sizes, args.image_sizes, args.sweep_patch)
    table = run_profiles(
        jobs,
        args.output,
        prior=args.prior,
        eval_h5=args.eval,
        steps=args.steps,
        device=args.device,
        threads=args.threads,
    )
    print(table.to_string(index=False))


def _cmd_figure(args: argparse.Namespace) -> None:
    import json

    from patchpnp.evaluation import figures

    if args.kind == "memory":
        written = figures.memory_figure(args.inputs, args.out_stem)
    elif args.kind == "padding":
        gt, zeros, reflect = args.inputs
        written = figures.padding_figure(gt, zeros, reflect, args.out_stem, index=args.index)
    else:
        rows = json.loads(args.inputs[0])
        written = figures.qualitative_figure(rows, args.out_stem, index=args.index)
    print("\n".join(str(w) for w in written))


def _cmd_check_config(args: argparse.Namespace) -> None:
    from patchpnp.pipeline.config import load_config

    load_config(args.config)
    print(f"{args.config}: valid")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="patchpnp", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="build fastMRI-layout demo volumes from the MNI152 template")
    d.add_argument("out_dir", help="folder to write file_mni_NNNN.h5 volumes into")
    d.add_argument("--layout", choices=["singlecoil", "multicoil"], required=True)
    d.add_argument("--train", type=int, default=0, help="training volumes to build")
    d.add_argument("--eval", type=int, default=0, help="evaluation volumes to build")
    d.add_argument("--tune", type=int, default=0, help="tuning volumes to build (after eval)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--recon-size", type=int, default=96)
    d.add_argument("--train-slices", type=int, default=16)
    d.add_argument("--eval-slices", type=int, default=7)
    d.add_argument("--edge-slices", type=int, default=2)
    d.add_argument("--coils", type=int, default=4)
    d.add_argument("--readout-oversampling", type=int, default=1)
    d.add_argument("--noise", type=float, default=0.01)
    d.set_defaults(func=_cmd_demo)

    e = sub.add_parser(
        "extract", help="extract [0, 1] slices from fastMRI volumes into one HDF5 file"
    )
    e.add_argument("volumes", nargs="+", help="fastMRI .h5 volumes")
    e.add_argument("--split", choices=["train", "eval", "tune"], required=True)
    e.add_argument("--output", required=True)
    e.add_argument("--image-size", type=int, required=True)
    e.add_argument("--crop-size", type=int, required=True)
    e.add_argument("--edge-slices", type=int, default=0)
    e.add_argument("--scale-percentile", type=float, default=99.5)
    e.add_argument("--layout", choices=["singlecoil", "multicoil", "any"], default="any")
    e.add_argument("--root", help="record volume paths relative to this folder")
    e.set_defaults(func=_cmd_extract)

    m = sub.add_parser("merge", help="join extraction shards into one split file")
    m.add_argument("shards", nargs="+")
    m.add_argument("--output", required=True)
    m.set_defaults(func=_cmd_merge)

    t = sub.add_parser("train", help="train one diffusion prior (torchrun for several processes)")
    t.add_argument("data", nargs="+", help="extracted training split files (train.h5)")
    t.add_argument("--out-dir", required=True, help="folder for ema.pt, logs and checkpoints")
    t.add_argument("--settings", help="resolved prior settings as JSON (what the workflow passes)")
    t.add_argument("--settings-file", help="resolved prior settings as a YAML file")
    t.add_argument("--config", help="a workflow config file, with --prior")
    t.add_argument("--prior", help="the prior's name in --config")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    t.add_argument(
        "--resume",
        default="auto",
        help="auto (continue this folder's checkpoint), never, or a checkpoint path",
    )
    t.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop after this many steps of this run (to test resuming)",
    )
    t.set_defaults(func=_cmd_train)

    q = sub.add_parser("denoise-check", help="PSNR of one denoiser call at several noise levels")
    q.add_argument("data", nargs="+", help="extracted evaluation split files")
    q.add_argument("--prior", required=True, help="ema.pt of a trained prior")
    q.add_argument(
        "--sigmas",
        type=float,
        nargs="+",
        default=[0.05, 0.1, 0.2],
        help="noise levels in [0, 1] units",
    )
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--tile", type=int, default=None, help="run through P x P shifted-grid tiles")
    q.add_argument("--padding", choices=["zeros", "reflect", "replicate"], default="reflect")
    q.add_argument("--draws", type=int, default=4, help="noise draws per image and sigma, averaged")
    q.add_argument("--output", help="write the table as CSV")
    q.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    q.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    q.set_defaults(func=_cmd_denoise_check)

    i = sub.add_parser("infer", help="one grid cell: solve a task on evaluation slices")
    i.add_argument("data", help="extracted evaluation split (eval.h5 or tune.h5)")
    i.add_argument("--recon", required=True, help="output HDF5 of reconstructions")
    i.add_argument("--metrics", required=True, help="output CSV of per-image metrics")
    i.add_argument("--task", required=True, help="denoise, sr, deblur or mri")
    i.add_argument("--task-params", default="{}", help='JSON, e.g. {"sigma_n": 0.1}')
    i.add_argument("--solver", required=True, help="dps, diffpir or baseline")
    i.add_argument("--solver-params", default="{}", help='JSON, e.g. {"steps": 100, "lam": 1}')
    i.add_argument("--prior", help="ema.pt of a trained prior (not for baseline)")
    i.add_argument("--size", default="whole", help="whole, or the patch size P")
    i.add_argument("--padding", choices=["zeros", "reflect", "replicate"], default="reflect")
    i.add_argument("--patch-batch", type=int, default=None, help="tiles per network call")
    i.add_argument("--batch-images", type=int, default=8)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    i.add_argument("--threads", type=int, default=None)
    i.add_argument("--limit", type=int, default=None, help="use only the first N images")
    i.add_argument(
        "--band", type=int, default=None, help="outer band (pixels) of the boundary score (4)"
    )
    i.set_defaults(func=_cmd_infer)

    x = sub.add_parser(
        "crosscheck",
        help="our DiffPIR against deepinv's (needs the crosscheck extra), PSNR per method",
    )
    x.add_argument("--prior", required=True, help="ema.pt of a trained prior")
    x.add_argument("--data", required=True, help="extracted evaluation split (eval.h5)")
    x.add_argument("--task", required=True, help="denoise or sr")
    x.add_argument("--config", help="take sigma_n and the DiffPIR settings from this config")
    x.add_argument("--prior-name", help="the prior's name in --config (default: its folder)")
    x.add_argument("--task-params", default="{}", help='JSON overrides, e.g. {"sigma_n": 0.2}')
    x.add_argument(
        "--solver-params", default="{}", help="JSON overrides: steps, lam (ours), zeta, sigma_start"
    )
    x.add_argument(
        "--start",
        choices=["config", "top"],
        default="config",
        help="config: both start at sigma_start; top: deepinv unmodified, ours from sigma_max",
    )
    x.add_argument(
        "--physics",
        choices=["native", "wrapped"],
        default="native",
        help="deepinv's own operator (checked equal to ours) or ours wrapped for deepinv",
    )
    x.add_argument("--limit", type=int, default=4, help="use only the first N images")
    x.add_argument(
        "--seed", type=int, default=None, help="default: the config's seed (as infer), else 0"
    )
    x.add_argument("--output", help="write the per-image table as CSV")
    x.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    x.add_argument("--threads", type=int, default=None)
    x.set_defaults(func=_cmd_crosscheck)

    u = sub.add_parser("tune", help="sweep lambda (DiffPIR) or zeta (DPS) on tuning slices")
    u.add_argument("data", nargs="+", help="extracted tuning splits (tune.h5)")
    u.add_argument("--output", required=True, help="CSV of PSNR per value, the choice marked")
    u.add_argument("--prior", required=True)
    u.add_argument("--solver", required=True, choices=["dps", "diffpir"])
    u.add_argument("--task", required=True)
    u.add_argument("--task-params", default="{}")
    u.add_argument("--solver-params", required=True, help="JSON; the tuned value is the centre")
    u.add_argument("--seed", type=int, default=0)
    u.add_argument("--batch-images", type=int, default=8)
    u.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    u.add_argument("--threads", type=int, default=None)
    u.set_defaults(func=_cmd_tune)

    us = sub.add_parser("tune-summary", help="collect tuned values into a config fragment")
    us.add_argument("tables", nargs="+")
    us.add_argument("--output", required=True)
    us.set_defaults(func=_cmd_tune_summary)

    a = sub.add_parser(
        "tables", help="Table 1, the extended table and the claim verdicts from per-cell metrics"
    )
    a.add_argument("metrics", nargs="+", help="metrics CSVs (results/metrics/... layout)")
    a.add_argument("--out-dir", required=True)
    a.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    a.add_argument("--image-shape", type=int, nargs=2, required=True, metavar=("H", "W"))
    a.add_argument("--profiles", nargs="*", default=[], help="profile CSVs, for claim (d)")
    a.add_argument("--margin-db", type=float, default=0.5, help="equivalence margin of claims")
    a.add_argument("--whole-prior", default="whole", help="the whole-image-trained prior")
    a.add_argument("--patch-prior", default="patch", help="the patch-trained prior")
    a.add_argument("--profile-prior", default="n/a", help="the profiled prior (a label)")
    a.set_defaults(func=_cmd_tables)

    r = sub.add_parser("profile", help="memory and time per denoiser call (fresh processes)")
    r.add_argument("--output", required=True, help="CSV, one row per configuration")
    r.add_argument("--prior", required=True, help="ema.pt of the profiled prior")
    r.add_argument("--eval", required=True, help="eval.h5 whose first slice is the test image")
    r.add_argument("--solvers", nargs="+", choices=["dps", "diffpir"], required=True)
    r.add_argument("--image-size", type=int, required=True)
    r.add_argument("--sizes", nargs="+", required=True, help="patch sides and/or whole")
    r.add_argument("--image-sizes", type=int, nargs="*", default=[])
    r.add_argument("--sweep-patch", type=int, required=True)
    r.add_argument("--steps", type=int, default=3)
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    r.add_argument("--threads", type=int, default=1)
    r.set_defaults(func=_cmd_profile)

    f = sub.add_parser("figure", help="draw a figure (PNG and PDF)")
    f.add_argument("kind", choices=["memory", "padding", "qualitative"])
    f.add_argument(
        "inputs",
        nargs="+",
        help="memory: profile CSVs; padding: gt.h5 zeros.h5 reflect.h5; "
        "qualitative: the rows as JSON (see patchpnp.evaluation.figures.qualitative_figure)",
    )
    f.add_argument("--out-stem", required=True, help="writes <stem>.png and <stem>.pdf")
    f.add_argument("--index", type=int, default=0, help="evaluation slice shown")
    f.set_defaults(func=_cmd_figure)

    c = sub.add_parser("check-config", help="validate a config file against the schema")
    c.add_argument("config")
    c.set_defaults(func=_cmd_check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One torch-free base class: catching it imports nothing the command does not need.
    from patchpnp.errors import PatchpnpError
    from patchpnp.pipeline.faults import InjectedFault, maybe_fail

    try:
        maybe_fail(" ".join(sys.argv[1:] if argv is None else argv))
        args.func(args)
    except (PatchpnpError, FileNotFoundError) as err:
        print(f"patchpnp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except InjectedFault as err:
        print(f"patchpnp {args.command}: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
