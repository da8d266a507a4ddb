"""tools/compare_runs: equal numbers pass, a moved number or a lone file fails, cost
columns are reported apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
from patchpnp.tools.compare_runs import compare_runs, main


def _write(root, rel, frame):
    path = root / "results" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def test_compare_runs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    cell = pd.DataFrame({"psnr": [20.0, np.nan], "seconds": [1.0, 2.0]})
    for root, seconds in ((a, 1.0), (b, 3.0)):
        _write(root, "metrics/cell.csv", cell.assign(seconds=seconds))
        _write(root, "logs/benchmarks/x.csv", pd.DataFrame({"s": [seconds]}))  # logs aside
    lines, differ = compare_runs(a, b)
    assert differ == 0 and "cost columns differ: seconds" in lines[0]
    assert main([str(a), str(b)]) == 0

    _write(b, "metrics/cell.csv", cell.assign(psnr=[20.0 + 1e-9, np.nan]))
    _write(a, "tables/only_here.csv", cell)
    lines, differ = compare_runs(a, b)
    assert differ == 2
    assert any(line.startswith("DIFFERS results/metrics/cell.csv: psnr") for line in lines)
    assert any("only in" in line and "only_here.csv" in line for line in lines)
    assert main([str(a), str(b)]) == 1
