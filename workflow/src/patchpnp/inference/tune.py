"""Tuning a solver's step size on held-out slices (ALGORITHMS.md section 8).

For one (prior, solver, task), each value of a log-spaced grid of the tuned
parameter (``lam`` for DiffPIR, ``zeta`` for DPS, ``weight`` for deepinv's solvers;
:data:`patchpnp.params.TUNED`) is run at whole-image
inference on the tuning slices of every dataset, which are disjoint from the
evaluation slices. The value with the best mean PSNR wins. The grid is
widened automatically while the best value sits on its edge, so the choice is
interior (or the search says it stopped at a limit). The choice rests on PSNR alone,
so the sweep computes no LPIPS (``metrics.lpips`` does not concern it).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from patchpnp.atomic import atomic_path
from patchpnp.inference.cell import run_cell
from patchpnp.layout import parse_tune_path
from patchpnp.metrics.quality import LPIPSMetric
from patchpnp.params import TUNED

log = logging.getLogger(__name__)


def log_grid(center: float, decades: float = 1.0, per_decade: int = 3) -> list[float]:
    """Values ``center * 10^(k / per_decade)`` for ``|k / per_decade| <= decades``."""
    k = int(round(decades * per_decade))
    return [center * 10 ** (i / per_decade) for i in range(-k, k + 1)]


def tune(
    data: Sequence[str | Path],
    *,
    prior: str | Path,
    solver: str,
    task: str,
    task_params: dict,
    solver_params: dict,
    seed: int = 0,
    batch_images: int = 8,
    per_decade: int = 3,
    decades: float = 1.0,
    max_widen: int = 3,
    threads: int | None = None,
    device: str = "auto",
    precision: str = "float32",
) -> tuple[pd.DataFrame, float]:
    """Sweep the solver's tuned parameter; return the table and the chosen value."""
    name = TUNED[solver]
    centre = float(solver_params[name])
    values = log_grid(centre, decades, per_decade)
    rows: dict[float, float] = {}
    lpips = LPIPSMetric(enabled=False)  # PSNR decides; LPIPS would cost an AlexNet per image
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(max_widen + 1):
            for v in values:
                key = round(v, 10)
                if key in rows:
                    continue
                psnrs = []
                for i, path in enumerate(data):
                    table = run_cell(
                        path,
                        Path(scratch) / f"{i}.h5",
                        Path(scratch) / f"{i}.csv",
                        task=task,
                        task_params=task_params,
                        solver=solver,
                        solver_params={**solver_params, name: v},
                        prior=prior,
                        seed=seed,
                        batch_images=batch_images,
                        threads=threads,
                        device=device,
                        precision=precision,
                        lpips=lpips,
                        progress=False,
                    )
                    psnrs += table["psnr"].tolist()
                rows[key] = sum(psnrs) / len(psnrs)
                log.info("%s %s %s=%.4g: PSNR %.3f dB", solver, task, name, v, rows[key])
            ordered = sorted(rows)
            best = max(ordered, key=rows.get)
            if best == ordered[0]:
                values = [best * 10 ** (-i / per_decade) for i in range(1, per_decade + 1)]
            elif best == ordered[-1]:
                values = [best * 10 ** (i / per_decade) for i in range(1, per_decade + 1)]
            else:
                break
        else:
            log.warning(
                "%s %s: best %s=%.4g is still on the edge after widening %d times",
                solver,
                task,
                name,
                best,
                max_widen,
            )
    table = pd.DataFrame(
        {
            "solver": solver,
            "task": task,
            "parameter": name,
            "value": sorted(rows),
            "psnr": [rows[k] for k in sorted(rows)],
        }
    )
    table["chosen"] = table["value"] == best
    table["interior"] = best not in (min(rows), max(rows))
    return table, best


def write_tuning(table: pd.DataFrame, output: str | Path) -> None:
    with atomic_path(output) as tmp:
        table.to_csv(tmp, index=False)


def summarise(tables: Sequence[str | Path], output: str | Path) -> dict:
    """Collect the chosen values in the config's own layout (paste into ``inference``)."""
    import yaml

    chosen: dict = {}
    for path in tables:
        t = pd.read_csv(path)
        row = t[t["chosen"]].iloc[0]
        prior = parse_tune_path(path)["prior"]
        chosen.setdefault(row["solver"], {"priors": {}})["priors"].setdefault(prior, {})[
            row["task"]
        ] = {row["parameter"]: float(f"{row['value']:.3g}")}
    with atomic_path(output) as tmp:
        tmp.write_text(
            "# Chosen by `snakemake tune` on the tuning slices; the layout of\n"
            "# config inference.solvers.<solver>.priors.<prior>.<task>.\n"
            + yaml.safe_dump({"solvers": chosen}, sort_keys=True)
        )
    return chosen


def tune_command(
    data: Sequence[str],
    *,
    output: str,
    prior: str,
    solver: str,
    task: str,
    task_params: dict,
    solver_params: dict,
    seed: int = 0,
    batch_images: int = 8,
    device: str = "auto",
    threads: int | None = None,
    precision: str = "float32",
    per_decade: int = 3,
    decades: float = 1.0,
) -> str:
    """``patchpnp tune``: sweep, write the table with the choice marked, return it as text."""
    table, _ = tune(
        data, prior=prior, solver=solver, task=task, task_params=task_params,
        solver_params=solver_params, seed=seed, batch_images=batch_images, threads=threads,
        device=device, precision=precision, per_decade=per_decade, decades=decades,
    )  # fmt: skip
    write_tuning(table, output)
    return table.to_string(index=False)


def summary_command(tables: Sequence[str], output: str) -> str:
    """``patchpnp tune-summary``: the config fragment it writes."""
    summarise(tables, output)
    return Path(output).read_text()
