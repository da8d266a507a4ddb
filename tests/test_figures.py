"""Tests of the paper figures on tiny synthetic inputs: files written, errors named."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from patchpnp.evaluation import figures
from patchpnp.evaluation.figures import (
    FigureError,
    border_zoom_box,
    memory_figure,
    padding_figure,
    qualitative_figure,
)

N = 32
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_h5(path, key: str, images: np.ndarray, measurement=None, **attrs):
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=images.astype(np.float32))
        if measurement is not None:
            f.create_dataset("measurement", data=measurement.astype(np.float32))
        f.attrs.update(attrs)
    return path


@pytest.fixture
def gt(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:N, :N] / N
    images = np.stack([0.5 + 0.4 * np.sin(6 * xx + k) * yy for k in range(4)])[:, None]
    images = np.clip(images + 0.02 * rng.standard_normal(images.shape), 0, 1)
    return write_h5(tmp_path / "eval.h5", "images", images), images


def noisy(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    return images + sigma * np.random.default_rng(seed).standard_normal(images.shape)


def profile_frame() -> pd.DataFrame:
    rows = []
    for solver in ("dps", "diffpir"):
        for p in (8, 16, 32):
            for pb in ("all", "1"):
                rows.append((solver, "patch", pb, p, 64, "inference_size", 10.0 * p, 0.01 * p))
        rows.append((solver, "whole", "none", 64, 64, "inference_size", 900.0, 0.5))
        for n in (32, 64, 128):
            rows.append((solver, "whole", "none", n, n, "image_size", n * n / 4, n / 100))
            rows.append((solver, "patch", "1", 16, n, "image_size", 160.0, n / 50))
    cols = ["solver", "mode", "patch_batch", "inference_size", "image_size", "sweep"]
    df = pd.DataFrame(rows, columns=[*cols, "peak_working_mib", "seconds_per_call"])
    # Total = a resident baseline (interpreter, libraries, model) + working, as on the CPU.
    df.insert(len(cols), "peak_total_mib", 400.0 + df["peak_working_mib"])
    return df.assign(device="cpu", how="torch.profiler memory events + VmRSS")


def assert_written(paths, stem):
    png, pdf = paths
    assert (str(png), str(pdf)) == (f"{stem}.png", f"{stem}.pdf")
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1024
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1024
    assert not list(png.parent.glob("*.part")), "no temporary file left behind"


def test_memory_figure(tmp_path, monkeypatch):
    df = profile_frame()
    df[df.solver == "dps"].to_csv(tmp_path / "dps.csv", index=False)
    df[df.solver == "diffpir"].to_csv(tmp_path / "diffpir.csv", index=False)
    stem = tmp_path / "fig" / "fig3"
    assert_written(memory_figure([tmp_path / "dps.csv", tmp_path / "diffpir.csv"], stem), stem)

    # Total memory (the paper's measure) on top, working memory beside it, then time.
    drawn = {}
    monkeypatch.setattr(figures, "_save", lambda fig, out: drawn.setdefault("fig", fig))
    memory_figure(tmp_path / "dps.csv", stem)
    left = drawn["fig"].axes[0::2]  # rows x (inference-size, image-size) sweeps
    assert [ax.get_ylabel() for ax in left] == [
        "peak total memory (MiB)",
        "peak working memory (MiB)",
        "seconds per denoiser call",
    ]
    tops = [max(np.max(ln.get_ydata(), initial=0) for ln in ax.get_lines()) for ax in left[:2]]
    assert tops == [400.0 + 900.0, 900.0], "each row plots its own column"
    monkeypatch.undo()

    for col in ("peak_total_mib", "peak_working_mib"):
        df.drop(columns=col).to_csv(tmp_path / "bad.csv", index=False)
        with pytest.raises(FigureError, match=rf"bad\.csv.*{col}"):
            memory_figure(tmp_path / "bad.csv", stem)
    old = df.drop(columns=["peak_total_mib", "peak_working_mib"]).assign(peak_mib=1.0)
    old.to_csv(tmp_path / "old.csv", index=False)
    with pytest.raises(FigureError, match=r"old\.csv.*peak_total_mib, peak_working_mib"):
        memory_figure(tmp_path / "old.csv", stem)
    with pytest.raises(FigureError, match=r"missing\.csv"):
        memory_figure([tmp_path / "missing.csv"], stem)
    pd.concat([df, df.head(1)]).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(FigureError, match="duplicate"):
        memory_figure(tmp_path / "dup.csv", stem)


def test_padding_figure(tmp_path, gt):
    gt_path, images = gt
    zeros = write_h5(tmp_path / "z.h5", "recon", noisy(images, 0.1, 1), padding="zeros")
    reflect = write_h5(tmp_path / "r.h5", "recon", noisy(images, 0.05, 2), padding="reflect")
    stem = tmp_path / "fig1"
    assert_written(padding_figure(gt_path, zeros, reflect, stem, index=1), stem)
    first = [p.read_bytes() for p in (stem.with_suffix(".png"), stem.with_suffix(".pdf"))]
    again = padding_figure(gt_path, zeros, reflect, tmp_path / "again", index=1)
    assert [p.read_bytes() for p in again] == first, "figures are byte-for-byte deterministic"
    assert_written(padding_figure(gt_path, zeros, reflect, stem, zoom=(20, 20, 12, 12)), stem)

    with pytest.raises(FigureError, match="not inside"):
        padding_figure(gt_path, zeros, reflect, stem, zoom=(28, 0, 8, 8))
    with pytest.raises(FigureError, match="padding attribute"):
        padding_figure(gt_path, reflect, zeros, stem)
    with pytest.raises(FigureError, match=r"nothere\.h5"):
        padding_figure(gt_path, tmp_path / "nothere.h5", reflect, stem)
    with pytest.raises(FigureError, match="out of range"):
        padding_figure(gt_path, zeros, reflect, stem, index=4)


def test_qualitative_figure(tmp_path, gt):
    gt_path, images = gt
    low = images.reshape(4, 1, N // 2, 2, N // 2, 2).mean(axis=(3, 5))
    upsampled = np.repeat(np.repeat(low, 2, axis=2), 2, axis=3)
    labels = [f"{s} {size}" for s in ("dps", "diffpir") for size in ("whole", "p16")]
    recon = noisy(images, 0.05, 4)
    rows = [
        {
            "task": "denoise",
            "gt": gt_path,
            "measurement": write_h5(tmp_path / "bd.h5", "recon", noisy(images, 0.2, 3)),
            "panels": [(s, write_h5(tmp_path / f"{s}.h5", "recon", recon)) for s in labels],
        },
        {
            "task": "sr",
            "gt": gt_path,
            "measurement": write_h5(tmp_path / "bs.h5", "recon", upsampled, measurement=low),
            "panels": [("dps whole", write_h5(tmp_path / "s.h5", "recon", images))],
        },
    ]
    stem = tmp_path / "fig2"
    assert_written(qualitative_figure(rows, stem, index=2), stem)

    with pytest.raises(FigureError, match="missing key"):
        qualitative_figure([{"task": "sr"}], stem)
    wrong = write_h5(tmp_path / "wrong.h5", "recon", images[:, :, :16])
    with pytest.raises(FigureError, match="differs from ground truth"):
        qualitative_figure([{**rows[1], "panels": [("x", wrong)]}], stem)


def test_zoom_box_is_chosen_where_the_paddings_differ_at_the_border():
    """The box is the border-touching window where zeros' error most exceeds reflect's:
    not the black top-left corner (where both are exact) and not an interior window,
    even one with a larger difference."""
    gain = np.zeros((32, 32))
    gain[12:20, 26:32] = 1.0  # zeros worse along the right border, rows 12-19
    gain[10:18, 10:18] = 5.0  # a larger difference away from the border
    y0, x0, h, w = border_zoom_box(gain, 8)
    assert (h, w) == (8, 8) and x0 == 24 and 12 <= y0 + 4 <= 20
    assert border_zoom_box(np.zeros((16, 16)), 4)[2:] == (4, 4)
    with pytest.raises(FigureError, match="does not fit"):
        border_zoom_box(gain, 40)
