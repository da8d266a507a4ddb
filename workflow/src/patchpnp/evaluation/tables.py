"""``patchpnp tables``: Table 1, the extended table, the claim verdicts and the
resolution check, in one step.

Everything is computed before anything is written, so an error in either the metrics
or the profiles stops the command with no table half-updated. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from patchpnp.evaluation.aggregate import extended_table, read_metrics, write_tables
from patchpnp.evaluation.claims import (
    ClaimSettings,
    claims_table,
    read_paper_scale,
    read_profiles,
    write_claims,
)
from patchpnp.evaluation.resolution import resolution_table, write_resolution
from patchpnp.layout import CLAIMS_STEM, RESOLUTION_STEM, TABLE1_STEM


def tables_command(
    metrics: Sequence[str],
    *,
    out_dir: str,
    image_shape: Sequence[int],
    seed: int = 0,
    claims: ClaimSettings | None = None,
    profiles: Sequence[str] = (),
    claims_metrics: Sequence[str] = (),
    bars: Sequence[float] | None = None,
    paper_scale: str | None = None,
) -> str:
    """Write every table under ``out_dir``; return Table 1 and the claims as markdown.

    ``claims_metrics``: more cells for the claims only (deepinv's solvers' cells of
    ``snakemake solvers`` when it is part of ``all``: claim (b) per solver), not for
    Table 1 and the extended table, which stay the paper's grid. ``bars``: the
    half-width bars ``(cell_db, pooled_db)`` of ``resolution.{csv,md}``
    (:mod:`patchpnp.evaluation.resolution`); None writes no resolution check.
    ``paper_scale``: the paper-scale profile, on which claim (d) is then judged (else on
    ``profiles``). ``claims``: how they are judged (default :class:`ClaimSettings`'s);
    ``seed``: the bootstrap seed of every interval.
    """
    settings = claims or ClaimSettings()
    margin_db, plateau_fraction = settings.margin_db, settings.plateau_fraction
    frame = read_metrics(metrics)
    verdicts = claims_table(
        read_metrics([*metrics, *claims_metrics]) if claims_metrics else frame,
        read_profiles(profiles),
        seed=seed,
        margin_db=margin_db,
        whole_prior=settings.whole_prior,
        patch_prior=settings.patch_prior,
        profile_prior=settings.profile_prior,
        paper_scale=read_paper_scale(paper_scale) if paper_scale else None,
        plateau_fraction=plateau_fraction,
    )
    extended = extended_table(frame, seed, image_shape=tuple(image_shape))
    resolution = None
    if bars is not None:
        cell_db, pooled_db = bars
        resolution = resolution_table(extended, verdicts, cell_db=cell_db, pooled_db=pooled_db)
    written = write_tables(frame, out_dir, seed, tuple(image_shape), extended=extended)
    written |= write_claims(verdicts, out_dir, margin_db, plateau_fraction)
    shown = [written[f"{TABLE1_STEM}.md"], written[f"{CLAIMS_STEM}.md"]]
    if resolution is not None:
        shown.append(write_resolution(resolution, out_dir)[f"{RESOLUTION_STEM}.md"])
    return "\n".join(Path(p).read_text() for p in shown)
