"""``patchpnp tables``: Table 1, the extended table and the claim verdicts, in one step.

The claims are computed before anything is written, so an error in either the metrics
or the profiles stops the command with no table half-updated. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from patchpnp.evaluation.aggregate import read_metrics, write_tables
from patchpnp.evaluation.claims import claims_table, read_profiles, write_claims


def tables_command(
    metrics: Sequence[str],
    *,
    out_dir: str,
    image_shape: Sequence[int],
    seed: int = 0,
    profiles: Sequence[str] = (),
    margin_db: float = 0.5,
    whole_prior: str = "whole",
    patch_prior: str = "patch",
    profile_prior: str = "n/a",
    claims_metrics: Sequence[str] = (),
) -> str:
    """Write every table under ``out_dir``; return Table 1 and the claims as markdown.

    ``claims_metrics``: more cells for the claims only (deepinv's solvers' cells of
    ``snakemake solvers`` when it is part of ``all``: claim (b) per solver), not for
    Table 1 and the extended table, which stay the paper's grid.
    """
    frame = read_metrics(metrics)
    claims = claims_table(
        read_metrics([*metrics, *claims_metrics]) if claims_metrics else frame,
        read_profiles(profiles),
        seed=seed,
        margin_db=margin_db,
        whole_prior=whole_prior,
        patch_prior=patch_prior,
        profile_prior=profile_prior,
    )
    written = write_tables(frame, out_dir, seed, tuple(image_shape))
    written |= write_claims(claims, out_dir, margin_db)
    return Path(written["table1.md"]).read_text() + "\n" + Path(written["claims.md"]).read_text()
