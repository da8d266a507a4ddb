"""Each contract constant has one home: no module writes out its own copy.

The paddings, the LPIPS modes, the precisions, the split names, the solver and task
names, the MRI masks, layouts and classical methods, and the paper-scale micro-batch
modes each live in one module (:mod:`patchpnp.layout`, :mod:`patchpnp.params`, or the
module that owns them); every other module imports them. A literal tuple, list or set
of exactly those strings elsewhere is a copy that would drift when the home changes.
The command line (``cli.py``, ``commands.py``) is left out while its copies move to
these homes, all torch-free so that it can import them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import patchpnp
import pytest
from patchpnp import formats, layout, params
from patchpnp.evaluation import profile_table

PACKAGE = Path(patchpnp.__file__).parent

HOMES = {
    "patchpnp.layout.PADDINGS": (layout, layout.PADDINGS),
    "patchpnp.layout.SPLITS": (layout, layout.SPLITS),
    "patchpnp.layout.CENTRAL_SLICE_SPLITS": (layout, layout.CENTRAL_SLICE_SPLITS),
    "patchpnp.layout.MRI_CLASSICAL_METHODS": (layout, layout.MRI_CLASSICAL_METHODS),
    "patchpnp.params.LPIPS_MODES": (params, params.LPIPS_MODES),
    "patchpnp.params.PRECISIONS": (params, params.PRECISIONS),
    "patchpnp.params.DEVICES": (params, params.DEVICES),
    "patchpnp.params.DEEPINV_SOLVERS": (params, params.DEEPINV_SOLVERS),
    "patchpnp.params.OUR_SOLVERS": (params, params.OUR_SOLVERS),
    "every solver (patchpnp.params.SOLVER_KEYS)": (params, tuple(params.SOLVER_KEYS)),
    "the tasks (patchpnp.params.TASK_KEYS)": (params, tuple(params.TASK_KEYS)),
    "patchpnp.params.MASK_TYPES": (params, params.MASK_TYPES),
    "patchpnp.formats.FASTMRI_LAYOUTS": (formats, formats.FASTMRI_LAYOUTS),
    "patchpnp.evaluation.profile_table.PATCH_BATCH_MODES": (
        profile_table,
        profile_table.PATCH_BATCH_MODES,
    ),
}


def string_collections(path: Path):
    """``(line, frozenset)`` of every tuple, list or set literal of 2+ strings in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 2:
            if all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                yield node.lineno, frozenset(e.value for e in node.elts)


def home_file(module) -> Path:
    return Path(module.__file__)


@pytest.mark.parametrize("name", sorted(HOMES))
def test_no_module_writes_out_its_own_copy(name):
    module, values = HOMES[name]
    wanted, home = frozenset(values), home_file(module)
    copies = [
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != home
        for line, found in string_collections(path)
        if found == wanted
    ]
    assert not copies, f"{name} is written out again (import it instead): {copies}"


def test_the_homes_agree_with_the_code_that_uses_them():
    from patchpnp.data.fastmri import RECONSTRUCTION_KEY
    from patchpnp.physics import mri
    from patchpnp.solvers import SOLVERS

    assert set(params.OUR_SOLVERS) == set(SOLVERS)
    assert set(formats.FASTMRI_LAYOUTS) == set(RECONSTRUCTION_KEY)
    assert mri.MASK_TYPES is params.MASK_TYPES


def test_a_copy_is_found():
    """The scan sees a literal copy (here, one in this test's own source)."""
    copy = ("zeros", "reflect", "replicate")
    found = {values for _, values in string_collections(Path(__file__))}
    assert frozenset(copy) in found and frozenset(layout.PADDINGS) == frozenset(copy)


def test_one_reader_of_tuning_tables():
    """Only patchpnp.inference.tuned reads a sweep's ``chosen`` column; the others (tune
    summary, solvers table, an MRI cell's lam) call its :func:`chosen_row`."""
    home = PACKAGE / "inference" / "tuned.py"
    readers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == home:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Subscript)
                and isinstance(node.ctx, ast.Load)
                and isinstance(node.slice, ast.Constant)
                and node.slice.value == "chosen"
            ):
                readers.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not readers, f"read the choice with patchpnp.inference.tuned.chosen_row: {readers}"


def test_the_tuning_readers_agree_on_a_table(tmp_path):
    import pandas as pd
    from patchpnp.inference.mri_cell import MRIError, read_tuned
    from patchpnp.inference.tune import summarise
    from patchpnp.inference.tuned import TunedValueError, read_chosen

    table = pd.DataFrame(
        {"solver": "dps", "task": "sr", "parameter": "zeta", "value": [0.1, 0.3, 1.0]}
    ).assign(psnr=[20.0, 21.0, 20.5], chosen=[False, True, False], interior=True)
    path = tmp_path / "results/tune/p/dps/sr.csv"
    path.parent.mkdir(parents=True)
    table.to_csv(path, index=False)
    assert read_chosen(path, "dps") == {"zeta": 0.3}
    chosen = summarise([path], tmp_path / "c.yaml")
    assert chosen == {"dps": {"priors": {"p": {"sr": {"zeta": 0.3}}}}}
    table.assign(chosen=True).to_csv(path, index=False)
    with pytest.raises(TunedValueError, match="one chosen row, found 3"):
        summarise([path], tmp_path / "c.yaml")
    sweep = pd.DataFrame({"lam": [0.01, 0.1], "psnr": [30.0, 31.0], "chosen": [False, True]})
    sweep.to_csv(tmp_path / "lam.csv", index=False)
    assert read_tuned(tmp_path / "lam.csv") == 0.1
    sweep.assign(chosen=False).to_csv(tmp_path / "lam.csv", index=False)
    with pytest.raises(MRIError, match="one chosen row, found 0"):
        read_tuned(tmp_path / "lam.csv")
