"""Do two runs of the workflow give the same numbers? Every CSV under each run's
``results/`` (logs aside), column by column.

A refactor must not move a number: run the workflow in a checkout before and after it,
then ``python -m patchpnp.tools.compare_runs BEFORE AFTER`` (each a working directory
holding ``results/``). Columns that measure cost (wall seconds, throughput, measured
memory, the mechanism that measured it) vary between any two runs and are reported
apart; every other column must be equal, NaN equal to NaN. Exit status 1 when a
number differs or a file is in one run only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from patchpnp.layout import LOGS

# Column names holding a measured cost, not a computed number.
COST_MARKERS = ("second", "time", "images_per_s", "mib", "how")


def is_cost_column(name: str) -> bool:
    return any(marker in name.lower() for marker in COST_MARKERS)


def compare_tables(before: Path, after: Path) -> tuple[list[str], list[str]]:
    """(columns whose numbers differ, cost columns that differ) of two CSV files; a
    change of columns or rows counts as every column differing."""
    a, b = pd.read_csv(before), pd.read_csv(after)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return sorted(set(a.columns) | set(b.columns)), []
    changed = [c for c in a.columns if not a[c].equals(b[c])]
    return [c for c in changed if not is_cost_column(c)], [c for c in changed if is_cost_column(c)]


def compare_runs(before: str | Path, after: str | Path) -> tuple[list[str], int]:
    """Report lines and the number of differing files."""
    roots = Path(before), Path(after)
    logs = Path(LOGS).name
    found = [
        {p.relative_to(root) for p in (root / "results").rglob("*.csv") if logs not in p.parts}
        for root in roots
    ]
    lines, differ = [], 0
    for rel in sorted(found[0] ^ found[1]):
        lines.append(f"only in {roots[0] if rel in found[0] else roots[1]}: {rel}")
        differ += 1
    same = 0
    for rel in sorted(found[0] & found[1]):
        if (roots[0] / rel).read_bytes() == (roots[1] / rel).read_bytes():
            same += 1
            continue
        numbers, cost = compare_tables(roots[0] / rel, roots[1] / rel)
        if numbers:
            differ += 1
            lines.append(f"DIFFERS {rel}: {', '.join(numbers)}")
        else:
            same += 1
            lines.append(f"same numbers {rel} (cost columns differ: {', '.join(cost)})")
    lines.append(f"{same} CSVs with the same numbers, {differ} differ")
    return lines, differ


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", help="working directory of the first run (holds results/)")
    p.add_argument("after", help="working directory of the second run")
    args = p.parse_args(argv)
    lines, differ = compare_runs(args.before, args.after)
    print("\n".join(lines))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
