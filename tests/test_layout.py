"""The results layout (patchpnp.layout): cells to paths and back, one pattern per file kind."""

import pytest
from patchpnp import layout
from patchpnp.layout import Cell, LayoutError, parse_metrics_path, parse_size, size_tag


@pytest.mark.parametrize("size, tag", [("whole", "whole"), (32, "p32"), ("128", "p128")])
def test_size_tags_round_trip(size, tag):
    assert size_tag(size) == tag
    assert parse_size(tag) == (size if size == "whole" else int(size))


@pytest.mark.parametrize("tag", ["32", "p0", "p-3", "pp32", "whole2"])
def test_bad_size_tags_are_refused(tag):
    with pytest.raises(LayoutError, match="expected 'whole' or p<P>"):
        parse_size(tag)


def test_cell_paths_parse_back_to_the_cell(tmp_path):
    cells = [
        Cell("knee", "patch", "dps", "sr", 32, "zeros"),
        Cell("mni_t1", "whole", "diffpir", "denoise", "whole", "none"),
    ]
    for cell in cells:
        assert cell.metrics.startswith("results/metrics/") and cell.recon.endswith(".h5")
        assert parse_metrics_path(cell.metrics) == cell
        assert parse_metrics_path(tmp_path / cell.metrics) == cell  # any root above results/
    recon, metrics = layout.baseline_files("knee", "sr")
    assert (recon, metrics) == (
        "results/infer/knee/baseline/sr.h5",
        "results/metrics/knee/baseline/sr.csv",
    )
    assert parse_metrics_path(metrics) == {"dataset": "knee", "task": "sr"}


@pytest.mark.parametrize("size, padding", [("whole", "reflect"), (32, "none"), (32, "mirror")])
def test_cells_refuse_paddings_their_size_cannot_have(size, padding):
    with pytest.raises(LayoutError, match="whole-image cell has padding 'none'"):
        Cell("knee", "whole", "dps", "sr", size, padding)


def test_tune_paths():
    path = layout.TUNE.format(prior="patch", solver="dps", task="sr")
    assert layout.parse_tune_path(path) == {"prior": "patch", "solver": "dps", "task": "sr"}
    with pytest.raises(LayoutError, match="tuning table"):
        layout.parse_tune_path("results/tune/dps/sr.csv")


def test_every_wildcard_has_a_constraint():
    import re

    patterns = [v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str)]
    used = {w for p in patterns for w in re.findall(r"{(\w+)}", p)}
    assert used <= set(layout.WILDCARDS)
