"""Reading a tuning table's choice: the one reader of every sweep the workflow writes.

A tuning table has one row per swept value (``solver, task, parameter, value, psnr,
chosen, interior``, written by :mod:`patchpnp.inference.tune`). A cell that runs with
the tuned value reads it from here, so the value comes from the recorded sweep and is
never copied by hand; ``patchpnp tune-summary`` (:func:`patchpnp.inference.tune.summarise`)
and the solvers table read the chosen row here too, and so does an MRI cell its
classical method's ``lam`` sweep (:func:`patchpnp.inference.mri_cell.read_tuned`; one row
per ``lam``, marked ``chosen`` the same way). Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import pandas as pd

from patchpnp.errors import PatchpnpError
from patchpnp.params import TUNED

__all__ = ["TunedValueError", "chosen_row", "read_chosen"]


class TunedValueError(PatchpnpError, ValueError):
    """A tuning table that does not hold one choice for the solver; the message says why."""


# The columns of a tuning table (patchpnp.inference.tune) that its choice is read from.
TABLE_COLUMNS = ("solver", "parameter", "value")


def chosen_row(path: str | os.PathLike, columns: Iterable[str] = TABLE_COLUMNS) -> pd.Series:
    """The chosen row of the tuning table at ``path`` (refused unless there is exactly one).

    ``columns``: those the table must have besides ``chosen`` (a tuning table's by default).
    """
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise TunedValueError(f"{path}: not a readable tuning table ({err})") from err
    need = {*columns, "chosen"}
    if missing := sorted(need - set(table.columns)):
        raise TunedValueError(f"{path}: missing columns {missing}; expected {sorted(need)}")
    chosen = table[table["chosen"].astype(str).str.lower() == "true"]
    if len(chosen) != 1:
        raise TunedValueError(f"{path}: expected one chosen row, found {len(chosen)}")
    return chosen.iloc[0]


def read_chosen(path: str | os.PathLike, solver: str) -> dict[str, float]:
    """``{parameter: value}`` of the chosen row of the tuning table at ``path``.

    Refuses a table of another solver, without exactly one chosen row, or whose
    parameter is not the one ``solver`` tunes (:data:`patchpnp.params.TUNED`).
    """
    row = chosen_row(path)
    if row["solver"] != solver or row["parameter"] != TUNED.get(solver):
        raise TunedValueError(
            f"{path}: tunes {row['parameter']!r} of {row['solver']!r}, but the cell runs "
            f"{solver!r}, which tunes {TUNED.get(solver)!r}"
        )
    return {str(row["parameter"]): float(row["value"])}
