"""``docs/results.md``: the measured tables of a run, gathered into one dated document.

Numbers quoted by hand in prose drift from the runs they came from; this document is
written from the tables themselves, so it is exactly as current as they are. It reads
what the workflow writes under ``results/`` (the paths come from
:mod:`patchpnp.layout`): Table 1 and the claim verdicts of the grid, its resolution
check, the grid on more slices (``snakemake resolution``), the claims across training
runs (``snakemake seeds``), the multicoil MRI table, claim (b) across solvers, the
posterior-uncertainty table, the paper-scale memory profile and the GPU check. A table
that is absent gets one line saying so and which target writes it.

The run's date is the modification time of the newest table read (UTC); every section
also dates its own files. Provenance: a digest of each trained prior's resolved
settings (``results/priors/<prior>/settings.yaml``: network, training, scheme, seed),
and of any config files passed in.

Claim tables are long (a row per cell); the document keeps their pooled rows and the
memory rows and names the file with every row. Markdown tables the workflow writes are
embedded with their own title dropped and their headings moved below this document's.
Torch-free.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from patchpnp import layout
from patchpnp.atomic import atomic_path
from patchpnp.evaluation.aggregate import to_markdown
from patchpnp.evaluation.claims import ALL, MEMORY_CLAIMS, claims_display

__all__ = ["SECTIONS", "results_doc_command", "write_results_doc"]

# The file stems the `tables` job writes in a tables folder (layout.TABLES, and
# layout.RESOLUTION_TABLES for snakemake resolution); layout.py names the folders only.
GENERATOR = "snakemake results_doc"


@dataclass(frozen=True)
class Part:
    """One table of a section: its path as the layout writes it (under ``results/``),
    how to render it, and the target that writes it."""

    path: str
    render: Callable[[Path], str]
    target: str


@dataclass(frozen=True)
class Section:
    title: str
    about: str
    parts: tuple[Part, ...]


# -- renderers ---------------------------------------------------------------------------------
def embed_markdown(path: Path) -> str:
    """A markdown file the workflow wrote, its first-level title dropped and every other
    heading moved two levels down (below this document's section headings)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    out = ["##" + line if line.startswith("#") else line for line in lines]
    return "\n".join(out).strip()


def _verdict_counts(detail: str) -> str:
    """``r / i / c`` from a pooled row's detail (its first clause), else the detail."""
    head = str(detail).split(";")[0]
    return head.rsplit(":", 1)[-1].strip() if head.startswith("cells ") else str(detail)


def pooled_claims(path: Path) -> str:
    """A claims table (:data:`patchpnp.evaluation.claims.CLAIMS_COLUMNS`): its pooled rows,
    and every memory row with the totals behind it."""
    table = pd.read_csv(path)
    keep = (table["dataset"] == ALL) | table["claim"].isin(MEMORY_CLAIMS)
    rows = table[keep].reset_index(drop=True)
    if rows.empty:
        return "*No pooled rows in this table.*"
    shown = claims_display(rows)
    memory = rows["claim"].isin(MEMORY_CLAIMS) & (rows["dataset"] != ALL)
    shown["cells r / i / c"] = [
        "" if m else _verdict_counts(d) for m, d in zip(memory, rows["detail"], strict=True)
    ]
    shown["detail"] = [d if m else "" for m, d in zip(memory, rows["detail"], strict=True)]
    columns = ["claim", "dataset", "prior", "solver", "size", "n_images", "estimate (dB)"]
    columns += ["95% interval (dB)", "verdict", "cells r / i / c", "detail"]
    if (rows["task"] != ALL).any():  # pooled per task (snakemake padis)
        columns.insert(columns.index("solver") + 1, "task")
    return to_markdown(shown[columns])


def pooled_rows(path: Path) -> str:
    """Any per-claim table with a ``dataset`` column (the seeds' claims): its pooled rows,
    without free-text columns."""
    table = pd.read_csv(path)
    if "dataset" in table:
        table = table[table["dataset"] == ALL]
    table = table.drop(columns=[c for c in table if c.startswith("detail")])
    if table.empty:
        return "*No pooled rows in this table.*"
    return to_markdown(table.reset_index(drop=True), floatfmt=".3f")


SECTIONS: tuple[Section, ...] = (
    Section(
        "Table 1: the paper's grid",
        "PSNR and LPIPS, mean ± std over the evaluation slices, per training scheme; patch "
        "inference with reflect padding (docs/methods.md section 8).",
        (Part(f"{layout.TABLES}/{layout.TABLE1_STEM}.md", embed_markdown, "snakemake"),),
    ),
    Section(
        "The paper's claims",
        "Pooled verdicts from paired per-image PSNR differences with 95% bootstrap "
        "intervals, and claim (d) on total memory (docs/methods.md section 10). Every "
        f"cell's row: `{layout.TABLES}/{layout.CLAIMS_STEM}.md`.",
        (Part(f"{layout.TABLES}/{layout.CLAIMS_STEM}.csv", pooled_claims, "snakemake"),),
    ),
    Section(
        "Resolution of the grid's intervals",
        "Each interval's half-width against `resolution.bars`.",
        (Part(f"{layout.TABLES}/{layout.RESOLUTION_STEM}.md", embed_markdown, "snakemake"),),
    ),
    Section(
        "The grid on more slices",
        "The same cells on `resolution.n_eval` slices per dataset: pooled verdicts, then "
        "the half-width check.",
        (
            Part(
                f"{layout.RESOLUTION_TABLES}/{layout.CLAIMS_STEM}.csv",
                pooled_claims,
                "snakemake resolution",
            ),
            Part(
                f"{layout.RESOLUTION_TABLES}/{layout.RESOLUTION_STEM}.md",
                embed_markdown,
                "snakemake resolution",
            ),
        ),
    ),
    Section(
        "The claims across training runs",
        "Each pooled claim row's estimate and verdict per training run; claim (a)'s "
        "yardstick is the gap between two whole-trained runs. Every cell: "
        f"`{layout.SEEDS_CELLS}.md`.",
        (Part(f"{layout.SEEDS_CLAIMS}.csv", pooled_rows, "snakemake seeds"),),
    ),
    Section(
        "Multicoil MRI from undersampled k-space",
        "fastMRI's metrics on magnitude images; classical baselines beside the diffusion "
        "cells (docs/methods.md section 11).",
        (Part(f"{layout.MRI_TABLE}.md", embed_markdown, "snakemake mri"),),
    ),
    Section(
        "Claim (b) across solvers",
        "Pooled verdicts per solver and over all solvers (docs/methods.md section 12). "
        f"Every cell: `{layout.SOLVERS_TABLE}.md`.",
        (Part(f"{layout.SOLVERS_CLAIMS}.csv", pooled_claims, "snakemake solvers"),),
    ),
    Section(
        "Posterior uncertainty, whole against patch",
        "Spread and coverage of K posterior samples (docs/methods.md section 12).",
        (Part(f"{layout.UNCERTAINTY_TABLE}.md", embed_markdown, "snakemake uncertainty"),),
    ),
    Section(
        "PaDIS as a system",
        "The position-aware prior against the position-free patch prior under tiles "
        "(g_position) and PaDIS against the whole-image prior (h_padis_vs_whole), pooled "
        f"per task (docs/methods.md sections 13 and 14). Every cell: `{layout.PADIS_TABLE}.md`.",
        (Part(f"{layout.PADIS_CLAIMS}.csv", pooled_claims, "snakemake padis"),),
    ),
    Section(
        "Data efficiency and distribution shift",
        "The patch prior against the whole-image prior trained on the same n_train slices, "
        "in distribution (e_data_efficiency) and under a shift (f_shift), pooled per "
        "n_train (docs/methods.md section 15). Every cell: "
        f"`{layout.GENERALIZATION_TABLE}.md`.",
        (Part(f"{layout.GENERALIZATION_CLAIMS}.csv", pooled_rows, "snakemake generalization"),),
    ),
    Section(
        "Memory and time at the paper's scale",
        "The paper's U-Net with random weights, whole against patches, per micro-batch "
        "mode (docs/methods.md sections 7 and 9).",
        (Part(layout.PAPER_SCALE_SUMMARY, embed_markdown, "snakemake paper_profile"),),
    ),
    Section(
        "GPU check",
        "Every kind of job once on one GPU at the paper config's shapes.",
        (Part(layout.GPU_CHECK_SUMMARY, embed_markdown, "snakemake gpu_check"),),
    ),
)


# -- the document --------------------------------------------------------------------------
def _under(results_dir: Path, path: str) -> Path:
    """A layout path (``results/...``) under ``results_dir`` instead of ``results/``."""
    rel = Path(path).relative_to(layout.RESULTS)
    return results_dir / rel


def _stamp(mtime: float, with_time: bool = False) -> str:
    when = dt.datetime.fromtimestamp(mtime, tz=dt.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M UTC" if with_time else "%Y-%m-%d")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def provenance(results_dir: Path, configs: Sequence[str | os.PathLike] = ()) -> list[str]:
    """One line per trained prior (its resolved settings' digest) and per config file."""
    lines = []
    prior_dirs = _under(results_dir, layout.PRIOR_DIR.replace("{prior}", "*"))
    for settings in sorted(prior_dirs.parent.glob(f"{prior_dirs.name}/settings.yaml")):
        try:
            s = yaml.safe_load(settings.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            s = {}
        scheme = (s.get("scheme") or {}).get("name", "?")
        steps = (s.get("training") or {}).get("steps", "?")
        lines.append(
            f"- prior `{settings.parent.name}`: scheme {scheme}, {steps} steps, seed "
            f"{s.get('seed', '?')}; settings digest `{_digest(settings)}`"
        )
    for config in configs:
        path = Path(config)
        lines.append(f"- config `{path.name}`: digest `{_digest(path)}`")
    return lines


def write_results_doc(
    results_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    configs: Sequence[str | os.PathLike] = (),
) -> str:
    """Write the results document of the tables under ``results_dir`` to ``out``.

    ``results_dir`` plays the part of ``results/`` in :mod:`patchpnp.layout`'s paths;
    ``configs`` are config files whose digests the provenance records. Returns the
    markdown written. The run's date is the newest table's modification time; absent
    tables are listed, each with the target that writes it.
    """
    results = Path(results_dir)
    body, mtimes, absent = [], [], []
    for number, section in enumerate(SECTIONS, start=1):
        body += [f"## {number}. {section.title}", "", section.about, ""]
        for part in section.parts:
            path = _under(results, part.path)
            if not path.is_file():
                absent.append(part.path)
                missing = f"`{part.path}` is absent (`{part.target}` writes it)"
                body += [f"*Not measured: {missing}.*", ""]
                continue
            mtime = path.stat().st_mtime
            mtimes.append(mtime)
            body += [f"From `{part.path}`, written {_stamp(mtime)}.", "", part.render(path), ""]

    found = len(mtimes)
    total = found + len(absent)
    head = [
        "# Results",
        "",
        f"Generated from the workflow's tables by `{GENERATOR}`; do not edit by hand.",
        "Methods: [methods.md](methods.md); how to run each target: [usage.md](usage.md).",
        "",
    ]
    if mtimes:
        head.append(
            f"**Run of {_stamp(max(mtimes))}**: the newest table's modification time, "
            f"{_stamp(max(mtimes), with_time=True)}; the oldest is "
            f"{_stamp(min(mtimes), with_time=True)}. {found} of {total} tables found."
        )
    else:
        head.append(f"**No measured tables found** ({total} looked for): nothing to date.")
    lines = provenance(results, configs)
    if lines:
        head += ["", "Provenance:", "", *lines]
    head.append("")
    text = "\n".join(head + body).rstrip() + "\n"
    with atomic_path(out) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return text


def results_doc_command(results_dir: str, output: str, configs: Sequence[str] = ()) -> str:
    """``patchpnp results-doc``: :func:`write_results_doc`, then say where it went."""
    text = write_results_doc(results_dir, output, configs=configs)
    return f"wrote {output} ({len(text.splitlines())} lines) from {results_dir}"
