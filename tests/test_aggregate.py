"""Tests of the summary tables: reading the grid's metrics CSVs, Table 1, the extended
table (baseline gain, paired patch-minus-whole bootstrap, time and pixel ratios), the
Markdown/LaTeX formatters and the atomic writer, on small hand-checkable CSVs."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
from patchpnp.evaluation.aggregate import (
    AggregateError,
    bootstrap_mean_ci,
    extended_table,
    format_mean_std,
    read_metrics,
    table1,
    table1_display,
    to_latex,
    to_markdown,
    write_tables,
)

SHAPE = (64, 64)
NAN = math.nan


def md_rows(md: str) -> list[list[str]]:
    """A Markdown pipe table's rows as lists of cell strings (the cell padding stripped)."""
    rows = [line for line in md.splitlines() if line.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", row[1:-1])] for row in rows]


def write_csv(
    path,
    psnr,
    *,
    lpips=None,
    seconds=1.0,
    nfe=10,
    tiles=None,
    task="denoise",
    solver="dps",
    size="whole",
    padding=None,
    images=None,
    drop=(),
):
    """One metrics CSV as ``patchpnp infer`` writes it (whole cells record padding none)."""
    padding = padding or ("none" if size == "whole" else "reflect")
    n = len(psnr)
    table = pd.DataFrame(
        {
            "image": images if images is not None else range(n),
            "source": "vol.h5",
            "slice": range(10, 10 + n),
            "psnr": psnr,
            "ssim": 0.8,
            "rmse_band": 0.03,
            "rmse_interior": 0.02,
            "lpips": lpips if lpips is not None else [NAN] * n,
            "data_consistency": 1.0,
            "nfe": nfe,
            "backward_passes": 0,
            "tiles_evaluated": tiles,
            "seconds": seconds,
            "task": task,
            "solver": solver,
            "size": size,
            "padding": padding,
            "sigma_n": 0.1,
            "seed": 0,
        }
    ).drop(columns=list(drop))
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path


@pytest.fixture
def grid(tmp_path):
    """knee/denoise: prior 'whole' at p16, p32 (reflect and zeros) and whole; prior 'patch'
    at whole and p32 without LPIPS; the baseline last. Listed out of display order on purpose.
    """
    m = tmp_path / "results" / "metrics" / "knee"
    cell = "{}/dps/denoise/{}.csv"
    lp = [0.1, 0.2, 0.3]
    return [
        write_csv(m / cell.format("whole", "p16-reflect"), [27, 29, 29], lpips=lp, seconds=3.0,
                  tiles=250, size="16"),
        write_csv(m / cell.format("whole", "p32-reflect"), [26.5, 27.5, 28.5], lpips=[0.2] * 3,
                  seconds=4.5, tiles=90, size="32"),
        write_csv(m / cell.format("whole", "whole-none"), [27, 28, 29], lpips=lp, seconds=2.0),
        write_csv(m / cell.format("whole", "p32-zeros"), [25, 26, 27], lpips=lp, seconds=4.5,
                  tiles=90, size="32", padding="zeros"),
        write_csv(m / cell.format("patch", "whole-none"), [26, 27, 28], seconds=2.0),
        write_csv(m / cell.format("patch", "p32-reflect"), [28, 30, 32], seconds=4.0, tiles=90,
                  size="32"),
        write_csv(m / "baseline" / "denoise.csv", [20, 22, 24], nfe=0, tiles=0,
                  solver="baseline"),
    ]  # fmt: skip


def cell_row(ext, prior, size, padding="reflect"):
    rows = ext[(ext["prior"] == prior) & (ext["size"] == size) & (ext["padding"] == padding)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_read_metrics_takes_the_cell_from_the_path(grid):
    df = read_metrics(grid)
    assert list(df.columns[:6]) == ["dataset", "task", "prior", "solver", "size", "padding"]
    assert {"image", "psnr", "lpips", "seconds", "tiles_evaluated"} <= set(df.columns)
    assert len(df) == 21 and set(df["dataset"]) == {"knee"}
    cells = df[["prior", "solver", "size", "padding"]].drop_duplicates()
    assert set(map(tuple, cells.to_numpy())) == {
        ("whole", "dps", "p16", "reflect"),
        ("whole", "dps", "p32", "reflect"),
        ("whole", "dps", "whole", "none"),  # the CSV says reflect: the path wins
        ("whole", "dps", "p32", "zeros"),
        ("patch", "dps", "whole", "none"),
        ("patch", "dps", "p32", "reflect"),
        ("baseline", "baseline", "measurement", "none"),
    }


def test_table1_values_order_and_display(grid):
    t1 = table1(read_metrics(grid))
    assert list(t1.columns) == [
        "dataset", "task", "solver", "size",
        "whole PSNR mean", "whole PSNR std", "whole LPIPS mean", "whole LPIPS std",
        "patch PSNR mean", "patch PSNR std", "patch LPIPS mean", "patch LPIPS std",
    ]  # fmt: skip
    assert list(t1["size"]) == ["whole", "p32", "p16"]  # zeros padding and baseline left out
    whole, p32, p16 = (t1.iloc[i] for i in range(3))
    assert whole["whole PSNR mean"] == pytest.approx(28.0)
    assert whole["whole PSNR std"] == pytest.approx(1.0)  # ddof=1
    assert whole["whole LPIPS mean"] == pytest.approx(0.2)
    assert whole["whole LPIPS std"] == pytest.approx(0.1)
    assert p32["whole PSNR mean"] == pytest.approx(27.5)  # reflect, not zeros (26.0)
    assert p32["patch PSNR mean"] == pytest.approx(30.0)
    assert p32["patch PSNR std"] == pytest.approx(2.0)
    assert math.isnan(p32["patch LPIPS mean"])
    assert math.isnan(p16["patch PSNR mean"])  # the patch prior has no p16 cell

    shown = table1_display(t1)
    assert list(shown.columns[4:]) == ["whole PSNR", "whole LPIPS", "patch PSNR", "patch LPIPS"]
    assert shown.loc[0, "whole PSNR"] == "28.00 ± 1.00"
    assert shown.loc[0, "whole LPIPS"] == "0.200 ± 0.100"
    assert shown.loc[1, "patch PSNR"] == "30.00 ± 2.00"
    assert shown.loc[1, "patch LPIPS"] == "n/a"
    assert shown.loc[2, "patch PSNR"] == "n/a"


def test_extended_table_gain_pairing_and_ratios(grid):
    ext = extended_table(read_metrics(grid), seed=3, image_shape=SHAPE)
    assert len(ext) == 7
    assert (ext.iloc[0]["prior"], ext.iloc[0]["size"]) == ("baseline", "measurement")
    assert list(ext[ext["prior"] == "whole"]["size"]) == ["whole", "p32", "p32", "p16"]

    base = ext.iloc[0]
    assert base["psnr_mean"] == pytest.approx(22.0) and base["gain_db"] == pytest.approx(0.0)
    assert math.isnan(base["dpsnr_vs_whole"])
    whole = cell_row(ext, "whole", "whole", "none")
    assert whole["n_images"] == 3 and whole["baseline_psnr"] == pytest.approx(22.0)
    assert whole["gain_db"] == pytest.approx(6.0)
    assert whole["band_ratio"] == pytest.approx(1.5)
    assert math.isnan(whole["tiles_evaluated_mean"]) and math.isnan(whole["time_ratio"])
    assert math.isnan(cell_row(ext, "patch", "whole", "none")["lpips_mean"])

    # Constant per-image difference -0.5 dB: a degenerate interval at exactly -0.5.
    p32 = cell_row(ext, "whole", "p32")
    assert (p32["dpsnr_vs_whole"], p32["dpsnr_lo"], p32["dpsnr_hi"]) == (-0.5, -0.5, -0.5)
    assert p32["time_ratio"] == pytest.approx(2.25)  # 4.5 s / 2.0 s
    assert p32["pixel_ratio"] == pytest.approx(9 * 32**2 / 64**2)  # 90 tiles / 10 NFE
    assert p32["time_over_pixels"] == pytest.approx(1.0)
    assert cell_row(ext, "whole", "p32", "zeros")["dpsnr_vs_whole"] == pytest.approx(-2.0)
    # Differences (0, 1, 0): mean 1/3, interval inside [0, 1] around it.
    p16 = cell_row(ext, "whole", "p16")
    assert p16["dpsnr_vs_whole"] == pytest.approx(1 / 3)
    assert 0.0 <= p16["dpsnr_lo"] <= 1 / 3 <= p16["dpsnr_hi"] <= 1.0
    assert p16["pixel_ratio"] == pytest.approx(25 * 16**2 / 64**2)
    assert p16["time_over_pixels"] == pytest.approx(1.5 / p16["pixel_ratio"])
    assert cell_row(ext, "patch", "p32")["dpsnr_vs_whole"] == pytest.approx(3.0)

    again = extended_table(read_metrics(grid), seed=3, image_shape=SHAPE)
    pd.testing.assert_frame_equal(ext, again)


def test_extended_table_refuses_unpaired_images(tmp_path):
    m = tmp_path / "metrics" / "knee" / "whole" / "dps" / "sr"
    paths = [
        write_csv(m / "whole-none.csv", [27, 28], task="sr"),
        write_csv(m / "p32-reflect.csv", [27, 28], task="sr", size="32", images=[0, 5], tiles=9),
    ]
    with pytest.raises(AggregateError, match="different images"):
        extended_table(read_metrics(paths), seed=0, image_shape=SHAPE)


def test_bootstrap_mean_ci():
    assert bootstrap_mean_ci([0.1, 0.1, 0.1], seed=0) == (0.1, 0.1, 0.1)
    assert bootstrap_mean_ci([2.5], seed=0) == (2.5, 2.5, 2.5)
    values = [0.0] * 50 + [1.0] * 50  # standard error 0.05: ~0.5 +- 1.96 * 0.05
    mean, lo, hi = bootstrap_mean_ci(values, seed=1)
    assert mean == 0.5
    assert lo == pytest.approx(0.402, abs=0.03) and hi == pytest.approx(0.598, abs=0.03)
    assert bootstrap_mean_ci(values, seed=1) == (mean, lo, hi)
    assert bootstrap_mean_ci(values, seed=1, level=0.5)[1] > lo
    with pytest.raises(AggregateError, match="NaN"):
        bootstrap_mean_ci([1.0, NAN], seed=0)
    with pytest.raises(AggregateError, match="no values"):
        bootstrap_mean_ci([], seed=0)


def test_format_mean_std():
    assert format_mean_std(27.8512, 1.1249, 2) == "27.85 ± 1.12"
    assert format_mean_std(0.12345, 0.0456, 3) == "0.123 ± 0.046"
    assert format_mean_std(NAN, 1.0, 2) == "n/a"
    assert format_mean_std(27.8512, NAN, 2) == "27.85"  # one image: no spread


def test_markdown_and_latex():
    df = pd.DataFrame({"cell_id": ["50% & #1", "a|b"], "v": [1.23456, 7.0], "s": ["1 ± 2", "x"]})
    md = to_markdown(df)
    header, rule, *body = md_rows(md)
    assert header == ["cell_id", "v", "s"]
    assert [r.strip("-") for r in rule] == [":", ":", ":"]
    assert rule[1].endswith(":") and not rule[0].endswith(":")  # numbers right, text left
    assert body == [["50% & #1", "1.235", "1 ± 2"], [r"a\|b", "7", "x"]]
    assert len({len(line) for line in md.splitlines()}) == 1  # padded to aligned columns

    tex = to_latex(df, caption="PSNR_dB & 5%", label="tab:my_table")
    for expected in [
        r"\begin{tabular}{lrl}",
        r"\toprule",
        r"cell\_id & v & s \\",
        r"\midrule",
        r"50\% \& \#1 & 1.235 & 1 $\pm$ 2 \\",
        r"\bottomrule",
        r"\caption{PSNR\_dB \& 5\%}",
        r"\label{tab:my_table}",
    ]:
        assert expected in tex


def test_markdown_and_latex_missing_values_and_special_characters():
    df = pd.DataFrame(
        {
            "dataset": ["mni_t1_singlecoil", "knee"],
            "share": ["50%", "a~b^c\\d{e}$f"],
            "psnr": [NAN, 27.5],
            "estimate": ["+0.150", ""],  # printed text stays as written, not re-parsed
        }
    )
    assert md_rows(to_markdown(df))[2:] == [
        ["mni_t1_singlecoil", "50%", "n/a", "+0.150"],
        ["knee", "a~b^c\\d{e}$f", "27.5", ""],
    ]
    tex = to_latex(df, caption="50% of mni_t1", label="tab:x_y")
    assert r"mni\_t1\_singlecoil & 50\% & n/a & +0.150 \\" in tex
    assert (
        r"knee & a\textasciitilde{}b\textasciicircum{}c\textbackslash{}d\{e\}\$f & 27.5 &  \\"
        in tex
    )
    assert r"\caption{50\% of mni\_t1}" in tex and r"\label{tab:x_y}" in tex
    assert r"\begin{tabular}{llrl}" in tex


def test_write_tables(grid, tmp_path):
    out = tmp_path / "tables"
    written = write_tables(read_metrics(grid), out, seed=0, image_shape=SHAPE)
    names = ["table1.csv", "table1.md", "table1.tex", "extended.csv", "extended.md"]
    assert list(written) == names
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no .part leftovers
    t1 = pd.read_csv(written["table1.csv"])
    assert list(t1["size"]) == ["whole", "p32", "p16"]
    assert t1.loc[0, "whole PSNR mean"] == pytest.approx(28.0)
    assert "28.00 ± 1.00" in written["table1.md"].read_text()
    assert r"28.00 $\pm$ 1.00" in written["table1.tex"].read_text()
    assert len(pd.read_csv(written["extended.csv"])) == 7
    rows = md_rows(written["extended.md"].read_text())
    assert ["baseline", "baseline", "measurement", "none"] in [r[2:6] for r in rows]


@pytest.mark.parametrize(
    "rel, match",
    [
        ("metrics/knee/whole/dps/denoise/whole-reflect.csv", "size-padding"),
        ("metrics/knee/whole/dps/denoise/p32-none.csv", "size-padding"),
        ("metrics/knee/whole/dps/denoise/32-reflect.csv", "size-padding"),
        ("metrics/knee/whole/dps/whole-none.csv", "layout"),
        ("metrics/knee/baseline/dps/denoise/whole-none.csv", "layout"),
        ("elsewhere/knee/whole/dps/denoise/whole-none.csv", "layout"),
    ],
)
def test_read_metrics_rejects_bad_layout(tmp_path, rel, match):
    path = write_csv(tmp_path / rel, [27.0])
    with pytest.raises(AggregateError, match=match) as err:
        read_metrics([path])
    assert str(path) in str(err.value)


def test_read_metrics_rejects_bad_files(tmp_path):
    m = tmp_path / "metrics" / "knee" / "whole" / "dps" / "denoise"
    with pytest.raises(AggregateError, match="not found"):
        read_metrics([m / "whole-none.csv"])
    bad = write_csv(m / "whole-none.csv", [27.0], drop=["seconds"])
    with pytest.raises(AggregateError, match=r"missing columns \['seconds'\]"):
        read_metrics([bad])
    wrong_task = write_csv(m / "p32-reflect.csv", [27.0], task="sr", size="32")
    with pytest.raises(AggregateError, match="column 'task' holds"):
        read_metrics([wrong_task])
    good = write_csv(m / "whole-none.csv", [27.0])
    with pytest.raises(AggregateError, match="twice"):
        read_metrics([good, good])
    empty = m.parent / "sr" / "whole-none.csv"
    empty.parent.mkdir()
    empty.write_text("")
    with pytest.raises(AggregateError, match="not a readable metrics CSV"):
        read_metrics([empty])
    with pytest.raises(AggregateError, match="no metrics files"):
        read_metrics([])
