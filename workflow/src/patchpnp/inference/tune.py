"""Tuning a solver's step size on held-out slices (docs/methods.md section 8).

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
from dataclasses import replace
from pathlib import Path

import pandas as pd

from patchpnp.atomic import atomic_path
from patchpnp.inference.cell import CellSpec, run_cell
from patchpnp.inference.tuned import chosen_row
from patchpnp.layout import WHOLE, parse_tune_path
from patchpnp.metrics.quality import LPIPSMetric
from patchpnp.params import TUNED
from patchpnp.runtime import Runtime

log = logging.getLogger(__name__)


def log_grid(center: float, decades: float = 1.0, per_decade: int = 3) -> list[float]:
    """Values ``center * 10^(k / per_decade)`` for ``|k / per_decade| <= decades``."""
    k = int(round(decades * per_decade))
    return [center * 10 ** (i / per_decade) for i in range(-k, k + 1)]


def tune(
    data: Sequence[str | Path],
    *,
    cell: CellSpec,
    runtime: Runtime | None = None,
    per_decade: int = 3,
    decades: float = 1.0,
    max_widen: int = 3,
) -> tuple[pd.DataFrame, float]:
    """Sweep the tuned parameter of ``cell``'s solver around its value in the cell's
    ``solver_params``, each value a whole-image cell on every split of ``data`` (the
    cell's size and tuning table do not count); return the table and the chosen value."""
    cell = replace(cell, size=WHOLE, tuned=None)
    solver, task, solver_params = cell.solver, cell.task, cell.solver_params
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
                        cell=replace(cell, solver_params={**solver_params, name: v}),
                        runtime=runtime,
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
        row = chosen_row(path)
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
    cell: CellSpec,
    runtime: Runtime | None = None,
    per_decade: int = 3,
    decades: float = 1.0,
) -> str:
    """``patchpnp tune``: sweep, write the table with the choice marked, return it as text."""
    table, _ = tune(data, cell=cell, runtime=runtime, per_decade=per_decade, decades=decades)
    write_tuning(table, output)
    return table.to_string(index=False)


def summary_command(tables: Sequence[str], output: str) -> str:
    """``patchpnp tune-summary``: the config fragment it writes."""
    summarise(tables, output)
    return Path(output).read_text()
