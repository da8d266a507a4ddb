"""The profile table (``results/profile/{solver}.csv``, ``patchpnp profile``), written
and read here only: one row per configuration, the columns :data:`PROFILE_COLUMNS`.
Fig. 3 and claim (d) read it. Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from patchpnp.formats import FormatError
from patchpnp.layout import WHOLE

PROFILE_COLUMNS = [
    "solver",
    "mode",  # whole or patch
    "patch_batch",  # tiles per network call: none (whole), all, or a number
    "inference_size",
    "image_size",
    "sweep",  # which of the two sizes the row's series varies
    "tiles_per_call",
    "peak_total_mib",
    "peak_working_mib",
    "seconds_per_call",
    "device",
    "how",  # how the memory was measured
    "micro_batch",  # patch_batch auto: the tiles per call it chose
    "predicted_working_mib",  # patch_batch auto: what the memory model predicted for a call
]
# The paper-scale profile (``results/profile/paper_scale.csv``, ``patchpnp paper-profile``):
# a random-weight network of the paper's size, whole against each patch size and
# micro-batch mode. The first ten columns are the file's contract; ``pixel_ratio`` is
# tiles x P^2 / N^2 (1 for whole); the ratios compare with the whole image of the same
# solver and size; ``timed_tiles`` < ``tiles_per_call`` marks an extrapolated time.
PATCH_BATCH_MODES = ("auto", "one", "all")  # the grid's choice, one tile per call, PaDIS's
PAPER_SCALE_COLUMNS = [
    "solver",
    "image_size",
    "inference_size",  # P, or N for whole
    "patch_batch_mode",  # whole or one of PATCH_BATCH_MODES
    "patch_batch",  # tiles per network call (empty for whole)
    "tiles_per_call",
    "peak_total_mib",
    "peak_working_mib",
    "seconds_per_call",
    "pixel_ratio",
    "working_vs_whole",
    "time_vs_pixel_ratio",
    "predicted_working_mib",
    "timed_tiles",
    "status",  # measured, or why not (predicted over the memory limit)
    "device",
    "how",
]
# What the readers need (older tables lack the rest).
PROFILE_REQUIRED = PROFILE_COLUMNS[: PROFILE_COLUMNS.index("tiles_per_call")] + [
    "peak_total_mib", "peak_working_mib", "seconds_per_call"
]  # fmt: skip
PROFILE_MODES = (WHOLE, "patch")
PROFILE_SWEEPS = ("inference_size", "image_size")
_PROFILE_NUMERIC = ("inference_size", "image_size", "peak_total_mib", "peak_working_mib",
                    "seconds_per_call")  # fmt: skip


def _read_table(path: Path, what: str, dtype: dict, required: Sequence[str]) -> pd.DataFrame:
    """A CSV with the ``required`` columns, or a :class:`FormatError` naming the file."""
    if not path.is_file():
        raise FormatError(f"{path}: {what} CSV not found")
    try:
        df = pd.read_csv(path, dtype=dtype)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise FormatError(f"{path}: not a readable {what} CSV ({err})") from err
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise FormatError(f"{path}: missing column(s) {', '.join(missing)}")
    return df


def read_profiles(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate profile tables, checked per file so an error names the file and column
    (an empty frame with :data:`PROFILE_REQUIRED` when no path is given)."""
    frames = []
    for path in map(Path, paths):
        dtype = {"patch_batch": str, "solver": str, "mode": str}
        df = _read_table(path, "profile", dtype, PROFILE_REQUIRED)
        for col in _PROFILE_NUMERIC:
            try:
                df[col] = pd.to_numeric(df[col])
            except (ValueError, TypeError) as err:
                raise FormatError(f"{path}: column {col!r} is not numeric ({err})") from err
        for col, allowed in (("mode", PROFILE_MODES), ("sweep", PROFILE_SWEEPS)):
            bad = df.loc[~df[col].isin(allowed), col]
            if len(bad):
                raise FormatError(f"{path}: column {col!r} has {bad.iloc[0]!r}; expected {allowed}")
        for col in ("solver", "inference_size", "image_size"):
            if df[col].isna().any():
                raise FormatError(f"{path}: column {col!r} has missing values")
        if (df["mode"].eq("patch") & df["patch_batch"].isna()).any():
            raise FormatError(f"{path}: column 'patch_batch' is missing on a patch row")
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=PROFILE_REQUIRED)
    return pd.concat(frames, ignore_index=True)


def read_paper_scale(path: str | os.PathLike) -> pd.DataFrame:
    """The paper-scale profile table, checked so an error names the file and column."""
    dtype = {"solver": str, "patch_batch_mode": str, "status": str}
    df = _read_table(Path(path), "paper-scale profile", dtype, PAPER_SCALE_COLUMNS)
    modes = (WHOLE, *PATCH_BATCH_MODES)
    bad = df.loc[~df["patch_batch_mode"].isin(modes), "patch_batch_mode"]
    if len(bad):
        raise FormatError(f"{path}: patch_batch_mode {bad.iloc[0]!r}; expected one of {modes}")
    return df
