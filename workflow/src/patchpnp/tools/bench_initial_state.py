"""What the first state's noise level changes (docs/methods.md sections 6 and 9).

For denoising the initial guess is ``y`` itself, which already carries the measurement
noise ``sigma_n``. The solvers now top it up to their first level ``s_0`` with
``sqrt(s_0^2 - sigma_n^2) z`` and leave ``y`` unclamped, so the state's noise is the
level the denoiser is told. Before, they clamped ``y`` to [0, 1] and added ``s_0 z`` on
top: a state noisier than ``s_0`` (``sqrt(s_0^2 + sigma_n^2)``), denoised as if it were
at ``s_0``. This benchmark solves the same evaluation slices both ways, with the same
keyed random streams, and reports the paired per-image PSNR difference (new - old)::

    python -m patchpnp.tools.bench_initial_state results/data/*/eval.h5 \\
        --prior results/priors/whole/ema.pt --config config/config.yaml

It is a measurement, not a test: it takes minutes on a CPU.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import pandas as pd
import torch

from patchpnp.evaluation.aggregate import bootstrap_mean_ci
from patchpnp.formats import read_split
from patchpnp.inference.cell import measurement_generators
from patchpnp.layout import WHOLE
from patchpnp.metrics.quality import psnr
from patchpnp.physics import make_operator
from patchpnp.solvers import SOLVERS, SolveStreams, make_solver
from patchpnp.solvers.base import per_sample_noise
from patchpnp.solvers.streams import INIT_STEP


def _previous_initial_state(solver):
    """The former rule: ``clamp(x_init, 0, 1) + s_0 z``, whatever noise ``x_init`` carries."""

    def initial_state(y, sigma_n, streams):
        with torch.no_grad():
            x_init = solver.operator.init(y).clamp(0.0, 1.0)
            noise = per_sample_noise(x_init, streams.solver(INIT_STEP))
            return x_init + float(solver.sigmas[0]) * noise

    return initial_state


def compare(
    data: Sequence[str], prior: str, config: dict, solvers: Sequence[str], threads: int = 2
) -> pd.DataFrame:
    from patchpnp.pipeline.plan import Plan
    from patchpnp.prior.loading import load_prior

    torch.set_num_threads(threads)
    denoiser, _ = load_prior(prior, torch.device("cpu"))
    task = dict(config["inference"]["tasks"]["denoise"])
    sigma_n = float(task.pop("sigma_n"))
    operator = make_operator("denoise", **task)
    rows = []
    for path in data:
        split = read_split(path)
        x, names = torch.from_numpy(split.images), split.names()
        y = operator.measure(x, sigma_n, measurement_generators(config["seed"], "denoise", names))
        for name in solvers:
            params = Plan(config).solver_params(name, "denoise", WHOLE)
            scores = {}
            for rule in ("new", "old"):
                solver = make_solver(name, denoiser, operator, **params)
                if rule == "old":
                    solver.initial_state = _previous_initial_state(solver)
                out, _ = solver.solve(y, sigma_n, SolveStreams.for_names(config["seed"], names))
                scores[rule] = psnr(out, x).numpy()
            diff = scores["new"] - scores["old"]
            mean, lo, hi = bootstrap_mean_ci(diff, config["seed"])
            rows.append(
                {
                    "data": path,
                    "solver": name,
                    "n_images": len(diff),
                    "psnr_old": scores["old"].mean(),
                    "psnr_new": scores["new"].mean(),
                    "dpsnr": mean,
                    "dpsnr_lo": lo,
                    "dpsnr_hi": hi,
                }
            )
            print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    from patchpnp.pipeline.config import load_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="+", help="evaluation splits (eval.h5)")
    p.add_argument("--prior", required=True, help="ema.pt of the prior")
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--solvers", nargs="+", default=sorted(SOLVERS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", help="write the table as CSV")
    args = p.parse_args(argv)
    table = compare(args.data, args.prior, load_config(args.config), args.solvers, args.threads)
    if args.output:
        table.to_csv(args.output, index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
