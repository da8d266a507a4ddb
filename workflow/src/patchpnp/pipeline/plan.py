"""What the workflow will compute: volumes, shards and demo folders for a config.

Snakemake's rules ask this module (via ``workflow/rules/common.smk``) which
files exist or will exist, so that the planning logic is plain Python,
unit-tested without Snakemake. In ``fastmri`` mode the listing reads the
fastMRI folders when the DAG is built, so a missing or empty folder stops the
workflow before any job runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from patchpnp import layout
from patchpnp.data.fastmri import list_volumes, resolution_volumes, split_eval_volumes
from patchpnp.layout import NO_PADDING, WHOLE, Cell

DEMO_ROOT = Path(layout.DEMO_ROOT)


@dataclass(frozen=True)
class DemoFolder:
    """One demo folder: the dataset it serves and how many volumes of each role it holds."""

    name: str
    layout: str
    train: int = 0
    eval: int = 0
    tune: int = 0
    more: int = 0  # evaluation volumes after the tuning ones: snakemake resolution's
    contrast: str = "mixed"  # patchpnp demo --contrast (flair: generalization's shift)

    @property
    def own(self) -> int:
        """The folder's own volumes: training, evaluation and tuning."""
        return self.train + self.eval + self.tune

    def files(self, root: Path = DEMO_ROOT) -> list[Path]:
        """The folder's own volumes, numbered in role order so that sorted names give
        eval first, then tune."""
        return self._numbered(root, 0, self.own)

    def more_files(self, root: Path = DEMO_ROOT) -> list[Path]:
        """The extra evaluation volumes, numbered after the tuning ones. A rule of their
        own builds them, so that changing resolution.n_eval never touches the grid's."""
        return self._numbered(root, self.own, self.own + self.more)

    def parts(self, root: Path = DEMO_ROOT) -> list[tuple[str, list[Path], str]]:
        """One job per part of the folder: ``(name suffix, volumes, patchpnp demo's count
        options)``; the extra evaluation volumes, when any, are a part of their own."""
        counts = f"--train {self.train} --eval {self.eval} --tune {self.tune}"
        if self.contrast != "mixed":
            counts += f" --contrast {self.contrast}"
        out = [("", self.files(root), counts)]
        if self.more:
            more = f"{counts} --more-eval {self.more} --first-file {self.own}"
            out.append(("_more", self.more_files(root), more))
        return out

    def _numbered(self, root: Path, start: int, stop: int) -> list[Path]:
        return [root / self.name / f"file_mni_{i:04d}.h5" for i in range(start, stop)]


class Plan:
    def __init__(self, config: dict):
        self.config = config
        self.data = config["data"]
        self.demo = self.data["source"] == "demo"
        self.root = DEMO_ROOT if self.demo else Path(config["fastmri_root"])
        self._listing: dict[str, list[Path]] = {}

    @property
    def datasets(self) -> list[str]:
        """The grid's datasets (data.datasets)."""
        return list(self.data["datasets"])

    @property
    def shift_datasets(self) -> dict[str, dict]:
        """Evaluation-only datasets of snakemake generalization's shift
        (generalization.shift_datasets): extracted like the grid's, in no grid."""
        return dict((self.config.get("generalization") or {}).get("shift_datasets") or {})

    def dataset_spec(self, dataset: str) -> dict:
        """A dataset's entry: data.datasets or generalization.shift_datasets."""
        if dataset in self.data["datasets"]:
            return self.data["datasets"][dataset]
        if dataset in self.shift_datasets:
            return self.shift_datasets[dataset]
        raise KeyError(
            f"dataset '{dataset}' is neither in data.datasets nor in generalization.shift_datasets"
        )

    def splits(self, dataset: str) -> list[str]:
        ds = self.dataset_spec(dataset)
        out = ["train"] if ds.get("train_dir") else []
        return out + ["eval"] + (["tune"] if ds.get("n_tune", 0) > 0 else [])

    def demo_folders(self) -> dict[str, DemoFolder]:
        if not self.demo:
            return {}
        out = {}
        for ds in self.data["datasets"].values():
            if ds.get("train_dir"):
                out[ds["train_dir"]] = DemoFolder(
                    ds["train_dir"], ds["layout"], train=self.data["demo"]["train_volumes"]
                )
            out[ds["eval_dir"]] = DemoFolder(
                ds["eval_dir"],
                ds["layout"],
                eval=ds["n_eval"],
                tune=ds["n_tune"],
                more=self.resolution_more(ds),
            )
        for ds in self.shift_datasets.values():
            out[ds["eval_dir"]] = DemoFolder(
                ds["eval_dir"], ds["layout"], eval=ds["n_eval"],
                contrast=ds.get("contrast", "mixed"),
            )  # fmt: skip
        return out

    def resolution_more(self, ds: dict) -> int:
        """Evaluation volumes snakemake resolution adds to dataset ``ds``'s own."""
        return max(self.config["resolution"]["n_eval"] - ds["n_eval"], 0)

    def _folder(self, name: str) -> list[Path]:
        if name not in self._listing:
            if self.demo:
                folder = self.demo_folders()[name]
                self._listing[name] = folder.files(self.root) + folder.more_files(self.root)
            else:
                self._listing[name] = list_volumes(self.root, name)
        return self._listing[name]

    def volumes(self, dataset: str, split: str) -> list[Path]:
        """The volumes a split reads, in a fixed order."""
        ds = self.dataset_spec(dataset)
        if split == "train":
            if not ds.get("train_dir"):
                raise ValueError(f"dataset '{dataset}' has no train_dir")
            files = self._folder(ds["train_dir"])
            limit = ds.get("max_train_volumes")
            return files[:limit] if limit else files
        where = self.root / ds["eval_dir"]
        files = self._folder(ds["eval_dir"])
        if split == layout.RESOLUTION_SPLIT:
            return resolution_volumes(
                files, ds["n_eval"], ds["n_tune"], self.resolution_more(ds), str(where)
            )
        return split_eval_volumes(files, ds["n_eval"], ds.get("n_tune", 0), str(where))[split]

    def n_shards(self, dataset: str, split: str) -> int:
        return math.ceil(len(self.volumes(dataset, split)) / self.data["volumes_per_shard"])

    def shard(self, dataset: str, split: str, index: int) -> list[Path]:
        per = self.data["volumes_per_shard"]
        vols = self.volumes(dataset, split)[index * per : (index + 1) * per]
        if not vols:
            raise ValueError(f"shard {index} of {dataset}/{split} is empty")
        return vols

    def split_files(self) -> list[str]:
        """Every extracted split file the config asks for."""
        return [
            layout.SPLIT.format(dataset=d, split=s) for d in self.datasets for s in self.splits(d)
        ]

    def _files_of(self, split: str) -> list[str]:
        return [
            layout.SPLIT.format(dataset=d, split=split)
            for d in self.datasets
            if split in self.splits(d)
        ]

    def train_files(self) -> list[str]:
        """The splits a prior trains on: every dataset's training split."""
        return self._files_of("train")

    def eval_files(self) -> list[str]:
        """Every dataset's evaluation split."""
        return self._files_of("eval")

    def tune_files(self) -> list[str]:
        """Every dataset's tuning split (datasets with n_tune > 0)."""
        return self._files_of("tune")

    # -- the inference grid --------------------------------------------------------------
    def solver_params(self, solver: str, task: str, prior: str) -> dict:
        """Steps and parameters of ``solver`` for ``task`` with ``prior`` (overrides last)."""
        spec = self.config["inference"]["solvers"][solver]
        params = {"steps": spec["steps"], **spec["tasks"][task]}
        params.update(spec.get("priors", {}).get(prior, {}).get(task, {}))
        return params

    def cells(self) -> list[Cell]:
        """Every (dataset, prior, solver, task, size, padding) job of the grid."""
        inf = self.config["inference"]
        out = []
        for dataset in self.datasets:
            for prior in self.config["priors"]:
                for solver in inf["solvers"]:
                    for task in inf["tasks"]:
                        for size in inf["sizes"]:
                            paddings = self.paddings_for(solver, size)
                            for padding in [NO_PADDING] if size == WHOLE else paddings:
                                out.append(Cell(dataset, prior, solver, task, size, padding))
        return out

    def cell_files(self, kind: str) -> list[str]:
        """``kind`` = infer (reconstructions) or metrics, for every grid cell and baseline."""
        if kind == "infer":
            return self.grid_files(layout.CELL_RECON, layout.BASELINE_RECON)
        return self.grid_files(layout.CELL_METRICS, layout.BASELINE_METRICS)

    def grid_files(self, cell_pattern: str, baseline_pattern: str) -> list[str]:
        """``cell_pattern`` for every grid cell, then ``baseline_pattern`` for every
        dataset and task (patterns of :func:`patchpnp.layout.grid_patterns`)."""
        files = [_cell_path(cell_pattern, c) for c in self.cells()]
        files += [
            baseline_pattern.format(dataset=d, task=t)
            for d in self.datasets
            for t in self.config["inference"]["tasks"]
        ]
        return files

    # -- reporting -----------------------------------------------------------------------
    def patch_sizes(self) -> list[int]:
        return sorted(int(s) for s in self.config["inference"]["sizes"] if s != WHOLE)

    def paddings_for(self, solver: str, size) -> list[str]:
        """The paddings ``solver`` runs at patch ``size``: every one listed where both
        ``padding_solvers`` and ``padding_sizes`` admit it (absent: all), else the first."""
        inf = self.config["inference"]
        solvers, sizes = inf.get("padding_solvers"), inf.get("padding_sizes")
        every = (solvers is None or solver in solvers) and (sizes is None or size in sizes)
        return list(inf["paddings"] if every else inf["paddings"][:1])

    def _recon(self, dataset, prior, solver, task, size, padding) -> str:
        return Cell(dataset, prior, solver, task, size, padding).recon

    def figure_inputs(self) -> dict:
        """What Figs. 1 and 2 show, as file paths (config key ``figures``).

        ``padding`` (Fig. 1: zeros vs reflect on the smallest patch size that runs both,
        first task) is None when the grid does not run both paddings for the figure's
        solver; ``rows`` (Fig. 2) has one entry per task: ground truth, measurement, whole
        and patch.
        """
        fig, inf = self.config["figures"], self.config["inference"]
        dataset = fig.get("dataset") or self.datasets[0]
        prior, solver = fig["prior"], fig["solver"]
        gt = layout.SPLIT.format(dataset=dataset, split="eval")
        sizes = self.patch_sizes()
        tasks = list(inf["tasks"])
        padding = None
        ablated = [p for p in sizes if {"zeros", "reflect"} <= set(self.paddings_for(solver, p))]
        if ablated:
            p = ablated[0]
            padding = {
                "gt": gt,
                "zeros": self._recon(dataset, prior, solver, tasks[0], p, "zeros"),
                "reflect": self._recon(dataset, prior, solver, tasks[0], p, "reflect"),
            }
        paddings = self.paddings_for(solver, sizes[0]) if sizes else inf["paddings"]
        shown = "reflect" if "reflect" in paddings else paddings[0]
        rows = []
        for task in tasks:
            panels = []
            if WHOLE in inf["sizes"]:
                panels.append([WHOLE, self._recon(dataset, prior, solver, task, WHOLE, NO_PADDING)])
            for size in sizes[:1]:
                panels.append(
                    [
                        f"patch {size} ({shown})",
                        self._recon(dataset, prior, solver, task, size, shown),
                    ]
                )
            rows.append(
                {
                    "task": task,
                    "gt": gt,
                    "measurement": layout.baseline_files(dataset, task)[0],
                    "panels": panels,
                }
            )
        return {"index": fig["index"], "padding": padding, "rows": rows}

    def figure_files(self) -> list[str]:
        stems = ["fig2_qualitative", "fig3_memory"]
        if self.figure_inputs()["padding"] is not None:
            stems.append("fig1_padding")
        return [f"{layout.FIGURES}/{s}.{ext}" for s in sorted(stems) for ext in ("png", "pdf")]


def _by_int(mapping: dict) -> dict:
    """Keys as ints: YAML reads ``{4: ...}`` with int keys, JSON (``--config``) as strings."""
    return {int(k): v for k, v in mapping.items()}


class MRIPlan:
    """What ``snakemake mri`` computes (config section ``mri``; docs/methods.md section 11):
    per multicoil dataset and acquisition (mask, acceleration), the classical baselines
    and every (prior, solver, inference size) diffusion cell."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.config = plan.config
        self.mri = self.config["mri"]

    @property
    def datasets(self) -> list[str]:
        return list(self.mri["datasets"])

    def train_files(self) -> list[str]:
        return [
            layout.MRI_SPLIT.format(dataset=d, split="train")
            for d in self.datasets
            if "train" in self.plan.splits(d)
        ]

    def center_fraction(self, acceleration) -> float:
        return float(_by_int(self.mri["accelerations"])[int(acceleration)])

    def acquisitions(self) -> list[dict[str, str]]:
        """Wildcards ``dataset, mask, acceleration`` of every acquisition."""
        return [
            {"dataset": d, "mask": m, "acceleration": str(a)}
            for d in self.datasets
            for m in self.mri["masks"]
            for a in self.mri["accelerations"]
        ]

    def solver_params(self, solver: str, acceleration) -> dict:
        """Steps and parameters of ``solver`` at ``acceleration`` (its overrides last)."""
        spec = {k: v for k, v in self.mri["solvers"][solver].items() if k != "accelerations"}
        overrides = _by_int(self.mri["solvers"][solver].get("accelerations", {}))
        spec.update(overrides.get(int(acceleration), {}))
        return spec

    def tuned_value(self, solver: str, acceleration) -> float:
        """The value ``snakemake mri_tune`` sweeps around: DiffPIR's lam, DPS's zeta."""
        from patchpnp.params import TUNED

        return float(self.solver_params(solver, acceleration)[TUNED[solver]])

    def cells(self) -> list[dict[str, str]]:
        """Wildcards of every diffusion cell (:data:`patchpnp.layout.MRI_CELL`)."""
        return [
            {**acq, "prior": p, "solver": s, "size": layout.size_tag(z)}
            for acq in self.acquisitions()
            for p in self.mri["priors"]
            for s in self.mri["solvers"]
            for z in self.mri["sizes"]
        ]

    def solver_tuning_files(self) -> list[str]:
        """``snakemake mri_tune``: each prior and solver's lam / zeta at each acquisition."""
        return [
            layout.MRI_TUNE_SOLVER.format(**acq, prior=p, solver=s)
            for acq in self.acquisitions()
            for p in self.mri["priors"]
            for s in self.mri["solvers"]
        ]

    def classical(self) -> list[dict[str, str]]:
        return [
            {**acq, "method": m}
            for acq in self.acquisitions()
            for m in layout.MRI_CLASSICAL_METHODS
        ]

    def metrics_files(self) -> list[str]:
        return [f"{layout.MRI_CELL.format(**c)}.csv" for c in self.cells()] + [
            f"{layout.MRI_CLASSICAL.format(**c)}.csv" for c in self.classical()
        ]

    def figure_rows(self) -> list[dict]:
        """The MRI figure: per acquisition of the first dataset, zero filling, CS, then
        each solver with the whole prior (the first of ``mri.priors``) at whole size and
        the patch prior (the last) at the smallest patch size."""
        if not self.datasets:
            return []
        dataset = self.datasets[0]
        whole_prior, patch_prior = self.mri["priors"][0], self.mri["priors"][-1]
        patch = [int(z) for z in self.mri["sizes"] if z != WHOLE]
        rows = []
        for acq in self.acquisitions():
            if acq["dataset"] != dataset:
                continue
            panels = [
                ("zero-filled", layout.MRI_CLASSICAL.format(**acq, method="zero_filled")),
                ("CS wavelet", layout.MRI_CLASSICAL.format(**acq, method="cs_wavelet")),
            ]
            for solver in self.mri["solvers"]:
                cell = {**acq, "solver": solver}
                panels.append(
                    (
                        f"{solver}, {whole_prior} prior, whole",
                        layout.MRI_CELL.format(**cell, prior=whole_prior, size=WHOLE),
                    )
                )
                if patch:
                    size = layout.size_tag(min(patch))
                    panels.append(
                        (
                            f"{solver}, {patch_prior} prior, {size}",
                            layout.MRI_CELL.format(**cell, prior=patch_prior, size=size),
                        )
                    )
            rows.append(
                {
                    "label": f"{acq['acceleration']}x {acq['mask']}",
                    "gt": layout.MRI_SPLIT.format(dataset=dataset, split="eval"),
                    "panels": [(label, f"{path}.h5") for label, path in panels],
                }
            )
        return rows

    def targets(self) -> list[str]:
        """The table and figure (nothing when ``mri.datasets`` is empty: no MRI task)."""
        if not self.datasets:
            return []
        stem_t, stem_f = layout.MRI_TABLE, layout.MRI_FIGURE
        return [f"{stem_t}.csv", f"{stem_t}.md", f"{stem_f}.png", f"{stem_f}.pdf"]


def tune_grid_options(tune: dict) -> str:
    """``patchpnp tune``'s grid options from a config's ``tune`` section (``solvers.tune``,
    ``padis.tune``): ``per_decade`` values per decade over ``decades`` either side."""
    return f"--per-decade {tune['per_decade']} --decades {tune['decades']}"


def _cell_path(pattern: str, cell: Cell) -> str:
    return pattern.format(**cell.wildcards())


class SolversPlan:
    """``snakemake solvers``: claim (b) across solvers (config section ``solvers``).

    Our solvers (``solvers.ours``) are the grid's own cells, reused; deepinv's
    (``solvers.deepinv``, keyed like ``inference.solvers``) run in
    :data:`patchpnp.layout.SOLVERS_METRICS` with the weight their tuning table chose.
    Every dataset and task of the grid, each prior of ``solvers.priors``, each size of
    ``solvers.sizes`` (patch sizes with ``solvers.padding``).
    """

    def __init__(self, plan: Plan):
        self.plan = plan
        self.spec = plan.config["solvers"]
        self.deepinv = self.spec.get("deepinv") or {}

    def solver_params(self, solver: str, task: str, prior: str) -> dict:
        """Steps and parameters of a solver of the comparison (ours: the grid's)."""
        if solver not in self.deepinv:
            return self.plan.solver_params(solver, task, prior)
        spec = self.deepinv[solver]
        params = {"steps": spec["steps"], **spec["tasks"][task]}
        params.update(spec.get("priors", {}).get(prior, {}).get(task, {}))
        return params

    def _cells(self, solvers) -> list[Cell]:
        tasks = self.plan.config["inference"]["tasks"]
        padding = self.spec["padding"]
        return [
            Cell(d, p, s, t, z, NO_PADDING if z == WHOLE else padding)
            for d in self.plan.datasets
            for p in self.spec["priors"]
            for s in solvers
            for t in tasks
            for z in self.spec["sizes"]
        ]

    def metrics_files(self) -> list[str]:
        """Every cell's metrics: ours in the grid's layout, deepinv's in their own."""
        return [c.metrics for c in self._cells(self.spec["ours"])] + self.deepinv_metrics_files()

    def deepinv_metrics_files(self) -> list[str]:
        """The metrics of deepinv's solvers' cells (:data:`patchpnp.layout.SOLVERS_METRICS`)."""
        return [_cell_path(layout.SOLVERS_METRICS, c) for c in self._cells(self.deepinv)]

    def tune_files(self) -> list[str]:
        """A tuning table per (prior, deepinv solver, task)."""
        return [
            layout.SOLVERS_TUNE.format(prior=p, solver=s, task=t)
            for p in self.spec["priors"]
            for s in self.deepinv
            for t in self.plan.config["inference"]["tasks"]
        ]

    def targets(self) -> list[str]:
        return [
            f"{stem}.{ext}"
            for stem in (layout.SOLVERS_TABLE, layout.SOLVERS_CLAIMS)
            for ext in ("csv", "md")
        ]


class UncertaintyPlan:
    """``snakemake uncertainty``: K posterior samples per image (config section
    ``uncertainty``) for each dataset and task of the grid, each prior, solver and size
    listed (patch sizes with ``uncertainty.padding``)."""

    def __init__(self, plan: Plan, solvers: SolversPlan):
        self.plan, self.solvers = plan, solvers
        self.spec = plan.config["uncertainty"]

    def cells(self) -> list[Cell]:
        padding = self.spec["padding"]
        return [
            Cell(d, p, s, t, z, NO_PADDING if z == WHOLE else padding)
            for d in self.plan.datasets
            for p in self.spec["priors"]
            for s in self.spec["solvers"]
            for t in self.plan.config["inference"]["tasks"]
            for z in self.spec["sizes"]
        ]

    def cell_files(self, ext: str) -> list[str]:
        return [f"{_cell_path(layout.UNCERTAINTY_CELL, c)}.{ext}" for c in self.cells()]

    def tuned_file(self, prior: str, solver: str, task: str) -> list[str]:
        """The tuning table a deepinv solver's cell reads (none for ours)."""
        if solver not in self.solvers.deepinv:
            return []
        return [layout.SOLVERS_TUNE.format(prior=prior, solver=solver, task=task)]

    def figure_cells(self, task: str) -> list[Cell]:
        """The figure's rows: the configured dataset, prior and solver at every size."""
        fig = self.spec["figure"]
        dataset = fig.get("dataset") or self.plan.datasets[0]
        padding = self.spec["padding"]
        return [
            Cell(
                dataset, fig["prior"], fig["solver"], task, z, NO_PADDING if z == WHOLE else padding
            )
            for z in self.spec["sizes"]
        ]

    def figure_files(self) -> list[str]:
        return [
            f"{layout.UNCERTAINTY_FIGURE.format(task=t)}.{ext}"
            for t in self.plan.config["inference"]["tasks"]
            for ext in ("png", "pdf")
        ]

    def targets(self) -> list[str]:
        table = [f"{layout.UNCERTAINTY_TABLE}.{ext}" for ext in ("csv", "md")]
        return table + self.figure_files()


class ResolutionPlan:
    """``snakemake resolution`` (config section ``resolution``): the grid's cells and
    measurement baselines again, with the same priors and settings, on the resolution
    split (each dataset's evaluation slices, then more: ``resolution.n_eval`` in all),
    in the grid's layout under :data:`patchpnp.layout.RESOLUTION_DIR`."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.spec = plan.config["resolution"]

    def split_files(self) -> list[str]:
        return [
            layout.SPLIT.format(dataset=d, split=layout.RESOLUTION_SPLIT)
            for d in self.plan.datasets
        ]

    def metrics_files(self) -> list[str]:
        """Every cell's and baseline's metrics, in the grid's order."""
        return self.plan.grid_files(layout.RESOLUTION_METRICS, layout.RESOLUTION_BASELINE_METRICS)


class SeedsPlan:
    """``snakemake seeds`` (config section ``seeds``): every prior retrained under
    ``seeds.extra`` more training seeds and the grid's cells rerun on each, in the grid's
    layout under :func:`patchpnp.layout.seed_run`. Run ``k`` trains with seed ``seed + k``;
    inference keeps the config's seed, so every run sees the grid's measurements and
    solver noise and a difference between runs is the training run's alone. The
    measurement baselines have no prior: every run reuses the grid's."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.spec = plan.config["seeds"]

    @property
    def runs(self) -> list[int]:
        """The extra training runs, 1 .. ``seeds.extra`` (run 0 is the grid)."""
        return list(range(1, int(self.spec["extra"]) + 1))

    def training_seed(self, run: int) -> int:
        """Run ``run``'s training seed (run 0: the config's, the grid's priors)."""
        return int(self.plan.config["seed"]) + int(run)

    @staticmethod
    def _cell_metrics(run: int) -> str:
        """Run ``run``'s cell metrics pattern (run 0: the grid's)."""
        if int(run) == 0:
            return layout.CELL_METRICS
        return layout.grid_patterns(layout.seed_run(run))[1]

    def metrics_files(self, run: int) -> list[str]:
        """Run ``run``'s cells, then the grid's baselines, in the grid's order."""
        return self.plan.grid_files(self._cell_metrics(run), layout.BASELINE_METRICS)

    def cell_metrics_files(self, run: int) -> list[str]:
        """Run ``run``'s cell metrics, no baselines (run 0: the grid's)."""
        return [_cell_path(self._cell_metrics(run), c) for c in self.plan.cells()]


class PadisPlan:
    """``snakemake padis`` (config section ``padis``; docs/methods.md sections 13 and 14):
    PaDIS's system against the paper's priors, on two domains.

    - ``mri``: the grid's evaluation slices of ``padis.mri_dataset`` (deblurring, SR). The
      whole and patch priors are the grid's own; the position-aware prior (``position``,
      scheme ``padis``) is trained on the grid's training splits with the grid's recipe.
    - ``ct``: the CT dataset ``padis.ct.name`` (synthetic ellipse phantoms on the demo,
      AAPM / Mayo DICOM in the paper config); every prior is trained on its training
      split with the same recipes.

    A task's domain is ``ct`` when its forward model is CT, else ``mri``. Cells: every
    prior of ``padis.priors`` x solver x task of its domain x inference size
    (``padis.sizes``: whole, or PaDIS's tiling with ``padis.padding``), plus a measurement
    baseline per task (FBP for CT), on the first ``padis.n_eval`` images, in the grid's
    cell layout under :data:`patchpnp.layout.PADIS_DIR`.
    """

    POSITION = "position"  # the position-aware prior's name in padis.priors

    def __init__(self, plan: Plan):
        self.plan = plan
        self.config = plan.config
        self.spec = plan.config["padis"]

    @property
    def ct(self) -> dict:
        return self.spec["ct"]

    @property
    def ct_dataset(self) -> str:
        return self.ct["name"]

    @property
    def mri_dataset(self) -> str:
        return self.spec.get("mri_dataset") or self.plan.datasets[0]

    def domain(self, task: str) -> str:
        from patchpnp.params import operator_name

        return "ct" if operator_name(task, self.spec["tasks"][task]) == "ct" else "mri"

    def tasks(self, domain: str) -> list[str]:
        return [t for t in self.spec["tasks"] if self.domain(t) == domain]

    def domains(self) -> list[str]:
        return [d for d in layout.PADIS_DOMAINS if self.tasks(d)]

    def dataset(self, domain: str) -> str:
        return self.ct_dataset if domain == "ct" else self.mri_dataset

    def domain_of_dataset(self, dataset: str) -> str:
        return "ct" if dataset == self.ct_dataset else "mri"

    # -- data ------------------------------------------------------------------------------
    def ct_splits(self) -> list[str]:
        return ["train", "eval"] + (["tune"] if self.ct.get("n_tune", 0) > 0 else [])

    def ct_inputs(self, wildcards=None) -> list[str]:
        """What a CT split is made from: nothing for phantoms (drawn from the seed), the
        DICOM folder of its patients otherwise."""
        if self.ct["source"] == "synthetic":
            return []
        split = getattr(wildcards, "split", "train")
        return [str(self.dicom_folder(split))]

    def dicom_folder(self, split: str) -> Path:
        """The DICOM folder of ``split``'s patients; a missing one stops the workflow
        before any job, naming the key."""
        from patchpnp.data.fastmri import DataError

        key = "train_dir" if split == "train" else "eval_dir"
        if not self.ct.get("root"):
            raise DataError(
                "config key 'padis.ct.root': the DICOM CT data's folder is not set (it holds "
                f"{self.ct.get('train_dir')!r} and {self.ct.get('eval_dir')!r}, one folder "
                "per patient); give it with --config 'padis={ct: {root: DIR}}', or leave "
                "PaDIS out of all with padis.in_all: false"
            )
        folder = Path(self.ct["root"]) / self.ct[key]
        if not folder.is_dir():
            raise DataError(f"config key 'padis.ct.{key}': CT folder {folder} does not exist")
        return folder

    def ct_split_options(self, split: str) -> str:
        """``patchpnp ct-split``'s options for ``split``: the phantoms' count, seed and
        first index (training, evaluation, then tuning phantoms are disjoint index
        ranges), or the DICOM folder and which of its patients."""
        ct, size = self.ct, int(self.ct["image_size"])
        n_eval, n_tune = int(ct["n_eval"]), int(ct.get("n_tune", 0))
        if ct["source"] == "synthetic":
            n_train = int(ct["n_train"])
            first = {"train": 0, "eval": n_train, "tune": n_train + n_eval}[split]
            n = {"train": n_train, "eval": n_eval, "tune": n_tune}[split]
            return (
                f"--ct-source synthetic --image-size {size} --images {n}"
                f" --first-image {first} --seed {int(self.config['seed'])}"
            )
        first, n = {"train": (0, 0), "eval": (0, n_eval), "tune": (n_eval, n_tune)}[split]
        return (
            f"--ct-source dicom --folder {self.dicom_folder(split)} --image-size {size}"
            f" --images {n} --first-image {first} --hu-max {float(ct.get('hu_max', 1000.0))}"
        )

    def synthetic_datasets(self) -> str:
        """The datasets whose rows the table marks synthetic (``none`` when none is)."""
        return self.ct_dataset if self.ct["source"] == "synthetic" else "none"

    def figure_title(self, task: str) -> str:
        dataset = self.dataset(self.domain(task))
        note = (
            " (synthetic phantoms)"
            if dataset == self.ct_dataset and self.ct["source"] == "synthetic"
            else ""
        )
        return f"{task} on {dataset}{note}"

    def ct_split_file(self, split: str) -> str:
        return layout.PADIS_SPLIT.format(dataset=self.ct_dataset, split=split)

    def eval_file(self, dataset: str) -> str:
        if dataset == self.ct_dataset:
            return self.ct_split_file("eval")
        return layout.SPLIT.format(dataset=dataset, split="eval")

    def train_files(self, domain: str) -> list[str]:
        """What domain ``domain``'s priors train on."""
        return [self.ct_split_file("train")] if domain == "ct" else self.plan.train_files()

    # -- priors ----------------------------------------------------------------------------
    def reuses_grid_prior(self, domain: str, prior: str) -> bool:
        """The MRI domain's whole and patch priors are the grid's own trained weights."""
        return domain == "mri" and prior != self.POSITION

    def prior_file(self, domain: str, prior: str) -> str:
        if self.reuses_grid_prior(domain, prior):
            return layout.PRIOR.format(prior=prior)
        return layout.PADIS_PRIOR.format(domain=domain, prior=prior)

    def prior_config(self, domain: str) -> dict:
        """The config the priors of ``domain`` resolve from: the grid's priors plus the
        position-aware one (``padis.position_prior``); for CT, the CT image size and
        ``padis.ct.training`` over the shared training settings."""
        priors = {**self.config["priors"], self.POSITION: self.spec["position_prior"]}
        data, training = dict(self.config["data"]), dict(self.config["training"])
        if domain == "ct":
            data["image_size"] = int(self.ct["image_size"])
            training.update(self.ct.get("training", {}))
        return {**self.config, "priors": priors, "data": data, "training": training}

    def trained_priors(self) -> list[dict[str, str]]:
        """Wildcards ``domain, prior`` of every prior this target trains itself."""
        return [
            {"domain": d, "prior": p}
            for d in self.domains()
            for p in self.spec["priors"]
            if not self.reuses_grid_prior(d, p)
        ]

    # -- cells -----------------------------------------------------------------------------
    def solver_params(self, solver: str, task: str) -> dict:
        """Steps (levels for PaDIS's solvers), ``inner`` where given, and the task's
        parameters of ``solver``."""
        spec = self.spec["solvers"][solver]
        params = {k: v for k, v in spec.items() if k != "tasks"}
        params.update(spec["tasks"][task])
        return params

    def cells(self) -> list[Cell]:
        padding = self.spec["padding"]
        return [
            Cell(self.dataset(self.domain(t)), p, s, t, z, NO_PADDING if z == WHOLE else padding)
            for t in self.spec["tasks"]
            for p in self.spec["priors"]
            for s in self.spec["solvers"]
            for z in self.spec["sizes"]
        ]

    # -- tuning (padis.tune) ---------------------------------------------------------------
    @property
    def tuned(self) -> bool:
        return bool(self.spec.get("tune"))

    def tune_data(self, dataset: str) -> str:
        """The tuning images of a domain's dataset: the grid's tuning split for MRI, the
        CT dataset's own."""
        if dataset == self.ct_dataset:
            return self.ct_split_file("tune")
        return layout.SPLIT.format(dataset=dataset, split="tune")

    def tune_jobs(self) -> list[dict[str, str]]:
        """Wildcards of every tuning table: one per (prior, solver, task) of the grid,
        with the task's dataset (the sizes share it: tuning runs whole images)."""
        cells = {(c.dataset, c.prior, c.solver, c.task) for c in self.cells()}
        keys = ("dataset", "prior", "solver", "task")
        return [dict(zip(keys, c, strict=True)) for c in sorted(cells)] if self.tuned else []

    def tune_files(self) -> list[str]:
        return [layout.PADIS_TUNE.format(**job) for job in self.tune_jobs()]

    def tuned_input(self, dataset: str, prior: str, solver: str, task: str) -> list[str]:
        """The tuning table a cell reads its step size from (none without padis.tune)."""
        if not self.tuned:
            return []
        return [layout.PADIS_TUNE.format(dataset=dataset, prior=prior, solver=solver, task=task)]

    def tune_grid(self) -> str:
        return tune_grid_options(self.spec["tune"])

    def baselines(self) -> list[dict[str, str]]:
        return [{"dataset": self.dataset(self.domain(t)), "task": t} for t in self.spec["tasks"]]

    def metrics_files(self) -> list[str]:
        cells = [_cell_path(layout.PADIS_METRICS, c) for c in self.cells()]
        return cells + [layout.PADIS_BASELINE_METRICS.format(**b) for b in self.baselines()]

    def figure_cells(self, task: str) -> list[Cell]:
        """A task's figure: every prior with PaDIS's DPS (else the first solver) under
        whole and tiled inference."""
        solvers = list(self.spec["solvers"])
        solver = "padis_dps" if "padis_dps" in solvers else solvers[0]
        return [c for c in self.cells() if c.task == task and c.solver == solver]

    def figure_files(self) -> list[str]:
        return [
            f"{layout.PADIS_FIGURE.format(task=t)}.{ext}"
            for t in self.spec["tasks"]
            for ext in ("png", "pdf")
        ]

    def targets(self) -> list[str]:
        tables = [
            f"{s}.{e}" for s in (layout.PADIS_TABLE, layout.PADIS_CLAIMS) for e in ("csv", "md")
        ]
        return tables + self.figure_files()


class GeneralizationPlan:
    """``snakemake generalization`` (config section ``generalization``; docs/methods.md
    section 15): data efficiency and distribution shift.

    A training domain (``generalization.domains``) names the datasets its priors train on
    and a shift dataset no prior saw. Per domain and ``n_train`` (slices per dataset, or
    ``all``), each prior of ``generalization.priors`` is trained with the grid's recipe on
    the first ``n_train`` slices of a fixed permutation of each training split
    (:mod:`patchpnp.data.subset`); with ``all``, on the whole splits, and where the domain
    trains on exactly the grid's datasets those are the grid's priors themselves. Cells:
    every (evaluation dataset: the domain's training datasets, then its shift dataset) x
    prior x solver x task x size with the grid's settings and keyed streams, in the grid's
    cell layout under :data:`patchpnp.layout.GENERALIZATION_RUN`; a cell the grid already
    has (the grid's prior on a grid dataset at a grid size) is the grid's own file.
    """

    def __init__(self, plan: Plan):
        self.plan = plan
        self.config = plan.config
        self.spec = plan.config.get("generalization") or {}
        self.unreadable: dict[str, str] = {}  # dataset -> why its slices were not counted

    # -- what is trained on what ---------------------------------------------------------
    @property
    def n_trains(self) -> list[str]:
        """The ``n_train`` values as they appear in paths (``24``, ``all``)."""
        return [str(n) for n in self.spec.get("n_train", [])]

    @property
    def domains(self) -> list[str]:
        return list(self.spec.get("domains", {}))

    def train_datasets(self, trained_on: str) -> list[str]:
        return list(self.spec["domains"][trained_on]["train"])

    def shift_dataset(self, trained_on: str) -> str:
        return self.spec["domains"][trained_on]["shift"]

    def eval_datasets(self, trained_on: str) -> list[str]:
        """In-distribution datasets (the training ones), then the shift dataset."""
        return [*self.train_datasets(trained_on), self.shift_dataset(trained_on)]

    @property
    def permutation_seed(self) -> int:
        seed = self.spec.get("permutation_seed")
        return int(self.config["seed"] if seed is None else seed)

    POSITION = PadisPlan.POSITION  # PaDIS's position-aware prior (padis.position_prior)

    def prior_config(self) -> dict:
        """The config the priors resolve from: the grid's priors and, as ``position``,
        PaDIS's position-aware prior (padis.position_prior) with the grid's data and
        training settings, as snakemake padis trains it on MRI slices."""
        return PadisPlan(self.plan).prior_config("mri")

    def reuses_grid_prior(self, trained_on: str, n_train: str, prior: str) -> bool:
        """``all`` slices of exactly the grid's training datasets: the grid's prior (for
        ``position``, the one snakemake padis trains on the grid's training splits)."""
        grid = [d for d in self.plan.datasets if "train" in self.plan.splits(d)]
        return (
            str(n_train) == layout.ALL_TRAINING
            and sorted(self.train_datasets(trained_on)) == sorted(grid)
            and (prior in self.config["priors"] or prior == self.POSITION)
        )

    def prior_file(self, trained_on: str, n_train: str, prior: str) -> str:
        if self.reuses_grid_prior(trained_on, n_train, prior):
            if prior == self.POSITION:
                return layout.PADIS_PRIOR.format(domain="mri", prior=prior)
            return layout.PRIOR.format(prior=prior)
        return layout.GENERALIZATION_PRIOR.format(
            trained_on=trained_on, n_train=n_train, prior=prior
        )

    def train_files(self, trained_on: str, n_train: str) -> list[str]:
        """What the priors of ``(trained_on, n_train)`` train on: each training dataset's
        subset, or its whole training split (``all``)."""
        if str(n_train) == layout.ALL_TRAINING:
            return [
                layout.SPLIT.format(dataset=d, split="train")
                for d in self.train_datasets(trained_on)
            ]
        return [
            layout.GENERALIZATION_TRAIN.format(dataset=d, n_train=n_train)
            for d in self.train_datasets(trained_on)
        ]

    def trained_priors(self) -> list[dict[str, str]]:
        """Wildcards ``trained_on, n_train, prior`` of every prior this target trains."""
        return [
            {"trained_on": t, "n_train": n, "prior": p}
            for t in self.domains
            for n in self.n_trains
            for p in self.spec["priors"]
            if not self.reuses_grid_prior(t, n, p)
        ]

    # -- training-set sizes (checked before any job) -------------------------------------
    def train_slice_count(self, dataset: str) -> int:
        """Slices of ``dataset``'s training split: from the config for the demo, from the
        volumes' headers for fastMRI (each volume's slices less the edge slices)."""
        if self.plan.demo:
            ds = self.plan.dataset_spec(dataset)
            volumes = int(self.config["data"]["demo"]["train_volumes"])
            if ds.get("max_train_volumes"):
                volumes = min(volumes, int(ds["max_train_volumes"]))
            return volumes * int(self.config["data"]["demo"]["train_slices"])
        from patchpnp.data.extract import slice_indices
        from patchpnp.data.fastmri import inspect_volume

        edge = int(self.config["data"]["edge_slices"])
        layout_ = self.plan.dataset_spec(dataset)["layout"]
        return sum(
            len(slice_indices(inspect_volume(v, layout_), "train", edge))
            for v in self.plan.volumes(dataset, "train")
        )

    def check_sizes(self) -> dict[str, int]:
        """Every numeric ``n_train`` fits every training split it cuts; returns the split
        sizes. Raises :class:`patchpnp.data.fastmri.DataError` naming the key and numbers.
        A dataset with a volume that cannot be read has no count (``unreadable`` says why):
        that volume's extraction job reports it, as it does without this target."""
        from patchpnp.data.fastmri import DataError

        counts, self.unreadable = {}, {}
        for d in dict.fromkeys(d for t in self.domains for d in self.train_datasets(t)):
            try:
                counts[d] = self.train_slice_count(d)
            except DataError as err:
                self.unreadable[d] = str(err)
        for n in self.n_trains:
            if n == layout.ALL_TRAINING:
                continue
            short = {d: c for d, c in counts.items() if int(n) > c}
            if short:
                raise DataError(
                    f"config key 'generalization.n_train': {n} slices per dataset, but the "
                    "training split of " + ", ".join(f"'{d}' holds {c}" for d, c in short.items())
                )
        return counts

    def n_train_slices(self, trained_on: str, n_train: str, counts: dict[str, int]) -> int:
        """Training slices the priors of ``(trained_on, n_train)`` see, over its datasets."""
        datasets = self.train_datasets(trained_on)
        if str(n_train) == layout.ALL_TRAINING:
            unknown = [d for d in datasets if d not in counts]
            if unknown:
                from patchpnp.data.fastmri import DataError

                why = self.unreadable.get(unknown[0], "its slices were not counted")
                raise DataError(f"training split of '{unknown[0]}': {why}")
            return sum(counts[d] for d in datasets)
        return int(n_train) * len(datasets)

    def check_shift(self) -> None:
        """The shift split shares no volume with the domain's training splits (the config
        check has made sure it is not one of them)."""
        from patchpnp.data.fastmri import DataError

        for t in self.domains:
            shift = self.shift_dataset(t)
            seen = {
                Path(v).resolve()
                for d in self.train_datasets(t)
                for v in self.plan.volumes(d, "train")
            }
            shared = [v for v in self.plan.volumes(shift, "eval") if Path(v).resolve() in seen]
            if shared:
                raise DataError(
                    f"config key 'generalization.domains.{t}.shift': {len(shared)} of the "
                    f"evaluation volumes of '{shift}' are training volumes of "
                    f"{self.train_datasets(t)} (e.g. {shared[0]}); the shift must be unseen"
                )

    # -- cells ----------------------------------------------------------------------------
    def sizes_of(self, prior: str) -> list[tuple]:
        """``(size, padding)`` of a prior's cells: whole and ``sizes`` with ``padding``; the
        position-aware prior tiles as PaDIS does (padis.sizes, padis.padding), since its
        canvas holds only that margin (a tile of N/2 needs N/2 around the image)."""
        spec = self.config["padis"] if prior == self.POSITION else self.spec
        return [(z, NO_PADDING if z == WHOLE else spec["padding"]) for z in spec["sizes"]]

    def cells(self, trained_on: str) -> list[Cell]:
        return [
            Cell(d, p, s, t, z, padding)
            for d in self.eval_datasets(trained_on)
            for p in self.spec["priors"]
            for s in self.spec["solvers"]
            for t in self.spec["tasks"]
            for z, padding in self.sizes_of(p)
        ]

    def reuses_grid_cell(self, trained_on: str, n_train: str, cell: Cell) -> bool:
        """The grid ran this cell: the grid's prior, on a grid dataset, at a grid size and
        padding (same solver settings, tasks and keyed streams)."""
        if cell.size not in self.config["inference"]["sizes"]:
            return False
        paddings = (
            [NO_PADDING] if cell.size == WHOLE else self.plan.paddings_for(cell.solver, cell.size)
        )
        return (
            self.reuses_grid_prior(trained_on, n_train, cell.prior)
            and cell.prior in self.config["priors"]
            and cell.dataset in self.plan.datasets
            and cell.padding in paddings
        )

    def metrics_files(self, trained_on: str, n_train: str) -> list[str]:
        return [
            _cell_path(layout.CELL_METRICS, c)
            if self.reuses_grid_cell(trained_on, n_train, c)
            else layout.GENERALIZATION_METRICS.format(
                trained_on=trained_on, n_train=n_train, **c.wildcards()
            )
            for c in self.cells(trained_on)
        ]

    def eval_file(self, dataset: str) -> str:
        return layout.SPLIT.format(dataset=dataset, split="eval")

    def table_groups(self, counts: dict[str, int]) -> str:
        """``patchpnp generalization-table``'s ``--group`` options, one per domain and
        ``n_train``: ``DOMAIN N_TRAIN N_TRAIN_SLICES SHIFT_DATASET METRICS...``."""
        return " ".join(
            f"--group {t} {n} {self.n_train_slices(t, n, counts)} {self.shift_dataset(t)} "
            + " ".join(self.metrics_files(t, n))
            for t in self.domains
            for n in self.n_trains
        )

    def table_inputs(self) -> list[str]:
        return [f for t in self.domains for n in self.n_trains for f in self.metrics_files(t, n)]
