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
# What the readers need (older tables lack the rest).
PROFILE_REQUIRED = PROFILE_COLUMNS[: PROFILE_COLUMNS.index("tiles_per_call")] + [
    "peak_total_mib", "peak_working_mib", "seconds_per_call"
]  # fmt: skip
PROFILE_MODES = ("whole", "patch")
PROFILE_SWEEPS = ("inference_size", "image_size")
_PROFILE_NUMERIC = ("inference_size", "image_size", "peak_total_mib", "peak_working_mib",
                    "seconds_per_call")  # fmt: skip


def read_profiles(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate profile tables, checked per file so an error names the file and column
    (an empty frame with :data:`PROFILE_REQUIRED` when no path is given)."""
    frames = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FormatError(f"{path}: profile CSV not found")
        try:
            df = pd.read_csv(path, dtype={"patch_batch": str, "solver": str, "mode": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise FormatError(f"{path}: not a readable profile CSV ({err})") from err
        missing = [c for c in PROFILE_REQUIRED if c not in df.columns]
        if missing:
            raise FormatError(f"{path}: missing column(s) {', '.join(missing)}")
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
