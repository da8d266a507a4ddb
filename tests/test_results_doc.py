"""docs/results.md is written from the measured tables and dated by them."""

from __future__ import annotations

import datetime as dt
import os

import pandas as pd
import yaml
from patchpnp import layout
from patchpnp.evaluation.claims import CLAIMS_COLUMNS
from patchpnp.evaluation.results_doc import SECTIONS, write_results_doc


def _under(root, path: str):
    """A layout path (``results/...``) under ``root`` instead."""
    dest = root / os.path.relpath(path, layout.RESULTS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest


def _at(path, year, month, day, hour=0):
    stamp = dt.datetime(year, month, day, hour, tzinfo=dt.timezone.utc).timestamp()
    os.utime(path, (stamp, stamp))


def _claims(path):
    rows = [
        # a cell row: left out of the document
        ["b_inference", "ds1", "dps", "sr", "p32", -0.2, -0.3, -0.1, "reproduced", "whole", 4,
         "PSNR p32 20.00, whole 20.20 dB"],
        # a pooled row
        ["b_inference", "all", "all", "all", "p32", -0.25, -0.35, -0.15, "inconclusive", "all", 8,
         "cells reproduced / inconclusive / contradicted: 3 / 1 / 0; reproduced only if every"],
        # a memory series row and its pooled row
        ["d_memory_falls", "profile N=64", "dps", "denoise", "all", None, None, None,
         "reproduced", "patch", 1, "total MiB, one tile per call: whole 648, p16 639"],
        ["d_memory_falls", "all", "all", "all", "all", None, None, None, "reproduced", "patch",
         1, "cells reproduced / inconclusive / contradicted: 1 / 0 / 0; dps: reproduced"],
    ]  # fmt: skip
    pd.DataFrame(rows, columns=CLAIMS_COLUMNS).to_csv(path, index=False)


def test_the_document_is_dated_by_its_newest_table(tmp_path):
    results = tmp_path / "results"
    table1 = _under(results, f"{layout.TABLES}/table1.md")
    table1.write_text("| dataset | PSNR |\n|:--|--:|\n| ds1 | 27.88 ± 1.09 |\n")
    _at(table1, 2026, 1, 2)
    claims = _under(results, f"{layout.TABLES}/claims.csv")
    _claims(claims)
    _at(claims, 2026, 3, 4, 12)
    mri = _under(results, f"{layout.MRI_TABLE}.md")
    mri.write_text("# Multicoil MRI reconstruction\n\n| a |\n|--|\n| 1 |\n\n## Checks\n\n- yes\n")
    _at(mri, 2026, 2, 1)
    settings = _under(results, f"{layout.PRIOR_DIR.format(prior='patch')}/settings.yaml")
    settings.write_text(
        yaml.safe_dump({"seed": 7, "scheme": {"name": "patch"}, "training": {"steps": 12}})
    )
    config = tmp_path / "config.yaml"
    config.write_text("seed: 7\n")

    out = tmp_path / "docs" / "results.md"
    text = write_results_doc(str(results), str(out), configs=[config])

    assert out.read_text() == text
    assert "Run of 2026-03-04" in text and "2026-03-04 12:00 UTC" in text
    assert "the oldest is 2026-01-02 00:00 UTC" in text
    assert f"From `{layout.TABLES}/table1.md`, written 2026-01-02." in text
    assert "| ds1 | 27.88 ± 1.09 |" in text
    # claims: pooled and memory rows only, with the verdict counts
    assert "3 / 1 / 0" in text and "whole 648, p16 639" in text
    assert "PSNR p32 20.00" not in text
    # an embedded markdown file loses its title; its headings go below the document's
    assert "Multicoil MRI reconstruction" not in text and "#### Checks" in text
    # every absent table is named with the target that writes it
    found = 3
    parts = [p for s in SECTIONS for p in s.parts]
    assert f"{found} of {len(parts)} tables found" in text
    assert (
        f"*Not measured: `{layout.UNCERTAINTY_TABLE}.md` is absent "
        "(`snakemake uncertainty` writes it).*"
    ) in text
    assert text.count("*Not measured:") == len(parts) - found
    # provenance: the prior's settings and the config, by digest
    assert "prior `patch`: scheme patch, 12 steps, seed 7; settings digest `" in text
    assert "config `config.yaml`: digest `" in text
    # sections are numbered in order
    for number, section in enumerate(SECTIONS, start=1):
        assert f"## {number}. {section.title}" in text


def test_no_tables_says_so(tmp_path):
    text = write_results_doc(str(tmp_path / "results"), str(tmp_path / "results.md"))
    assert "No measured tables found" in text and "Run of" not in text
    assert text.count("*Not measured:") == sum(len(s.parts) for s in SECTIONS)
