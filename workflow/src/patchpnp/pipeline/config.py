"""Configuration checks: the JSON schema, then the rules a schema cannot say.

Snakemake validates the config in ``workflow/rules/common.smk`` by calling
:func:`validate_config` before building the DAG, so a typo or a bad value stops
the workflow before any job runs, with a message that names the key.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from patchpnp.errors import PatchpnpError
from patchpnp.layout import ALL_TRAINING, WHOLE
from patchpnp.params import (
    DEEPINV_SOLVERS,
    OPERATOR,
    SOLVER_KEYS,
    SOLVER_REQUIRED,
    TASK_KEYS,
    operator_name,
)
from patchpnp.patching.micro_batch import MicroBatchError, parse_budget
from patchpnp.patching.tiling import AxisGrid
from patchpnp.prior.spec import padis_patch_mixture, padis_scheme

# Package data, so an installed wheel validates configs too; the workflow's
# conventional workflow/schemas/config.schema.yaml is a link to this file.
SCHEMA_RESOURCE = resources.files("patchpnp.pipeline") / "config.schema.yaml"
RESERVED_DATASET_NAMES = {"fastmri_demo"}  # used by results/data/fastmri_demo


class ConfigError(PatchpnpError, ValueError):
    """The configuration is invalid; the message names the key and what was expected."""


def load_schema(path: str | Path | None = None) -> dict:
    """The config schema: the package's own, or the file at ``path``."""
    source = SCHEMA_RESOURCE if path is None else Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"config schema not found at {source}")
    return yaml.safe_load(source.read_text())


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _schema_at(schema: dict, path) -> dict:
    node = schema
    for part in path:
        props = node.get("properties", {})
        if part in props:
            node = props[part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return {}
    return node


def _describe(error: jsonschema.ValidationError, schema: dict) -> str:
    key = _key(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(_schema_at(schema, error.absolute_path).get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"config key '{key}': unknown key(s) {extra}; allowed keys are {allowed}"
    if error.validator == "required":
        return f"config key '{key}': {error.message}"
    if "propertyNames" in error.schema_path:
        return (
            f"config key '{key}': name {error.instance!r} is not allowed; use lower-case "
            f"letters, digits and underscores, starting with a letter"
        )
    expected = error.schema.get("description", "")
    hint = f" ({expected.strip()})" if expected else ""
    return f"config key '{key}': {error.message}{hint}"


def validate_config(
    config: dict[str, Any], schema_path: str | Path | None = None
) -> dict[str, Any]:
    """Check ``config`` against the schema and the cross-key rules; return it unchanged.

    Raises :class:`ConfigError` listing every problem found, each naming its key.
    """
    schema = load_schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    problems = [_describe(e, schema) for e in sorted(validator.iter_errors(config), key=str)]
    if not problems:
        problems = _cross_checks(config)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return config


def _cross_checks(config: dict[str, Any]) -> list[str]:
    data = config["data"]
    out = []
    if data["crop_size"] < data["image_size"]:
        out.append(
            f"config key 'data.crop_size': {data['crop_size']} is smaller than "
            f"data.image_size {data['image_size']}; the crop is resized down to image_size"
        )
    for name in data["datasets"]:
        if name in RESERVED_DATASET_NAMES:
            out.append(f"config key 'data.datasets.{name}': the name is reserved; choose another")
    out += _prior_checks(config)
    out += _inference_checks(config)
    out += _mri_checks(config)
    out += _comparison_checks(config)
    out += _padis_checks(config)
    out += _generalization_checks(config)
    source = (config.get("metrics") or {}).get("lpips_source")
    if source is not None and not source.startswith(("https://", "http://", "file://")):
        out.append(
            f"config key 'metrics.lpips_source': {source!r} is not an https://, http:// or "
            f"file:// URL"
        )
    if data["source"] == "fastmri":
        if not config.get("fastmri_root"):
            out.append(
                "config key 'fastmri_root': required when data.source is 'fastmri' "
                "(set it with --config fastmri_root=/path/to/fastmri)"
            )
    else:
        demo = data.get("demo")
        if demo is None:
            out.append("config key 'data.demo': required when data.source is 'demo'")
        else:
            if demo["recon_size"] < data["crop_size"]:
                out.append(
                    f"config key 'data.demo.recon_size': {demo['recon_size']} is smaller "
                    f"than data.crop_size {data['crop_size']}"
                )
            folders: dict[str, str] = {}
            for name, ds in data["datasets"].items():
                if ds["layout"] == "any":
                    out.append(
                        f"config key 'data.datasets.{name}.layout': the demo builds "
                        f"volumes of one layout; use singlecoil or multicoil, not 'any'"
                    )
                for role in ("train_dir", "eval_dir"):
                    folder = ds.get(role)
                    if folder is None:
                        continue
                    if folder in folders:
                        out.append(
                            f"config key 'data.datasets.{name}.{role}': folder "
                            f"'{folder}' is already used by {folders[folder]}; each "
                            f"demo folder is built for one dataset and role"
                        )
                    folders[folder] = f"data.datasets.{name}.{role}"
    return out


def _prior_checks(config: dict[str, Any]) -> list[str]:
    out = []
    size = config["data"]["image_size"]
    if not any(ds.get("train_dir") for ds in config["data"]["datasets"].values()):
        out.append("config key 'data.datasets': no dataset has a train_dir; the priors need one")
    for name, prior in config["priors"].items():
        key = f"priors.{name}"
        net = {**config["network"], **prior.get("network", {})}
        tr = {**config["training"], **prior.get("training", {})}
        levels = len(net["channel_mult"])
        multiple = 2 ** (levels - 1)
        bad_levels = [lv for lv in net["attn_levels"] if lv >= levels]
        if bad_levels:
            out.append(
                f"config key '{key}' (network.attn_levels): levels {bad_levels} do not "
                f"exist; the network has levels 0..{levels - 1}"
            )
        sizes = [size]
        if prior["scheme"] == "patch":
            if "train_patch" not in prior:
                out.append(f"config key '{key}.train_patch': required for scheme patch")
                continue
            sizes = [prior["train_patch"]]
        for extra in ("patch_sizes", "patch_probs", "pad"):
            if extra in prior and prior["scheme"] != "padis":
                out.append(
                    f"config key '{key}.{extra}': only the padis scheme takes it "
                    f"(its patch-size mixture and canvas)"
                )
        if prior["scheme"] == "padis":
            if "patch_probs" in prior and "patch_sizes" not in prior:
                out.append(
                    f"config key '{key}.patch_probs': give patch_sizes with it (without "
                    f"both, PaDIS's mixture fitted to the network is used)"
                )
            n = len(prior.get("patch_sizes", []))
            probs = prior.get("patch_probs")
            if probs is not None and n and (len(probs) != n or sum(probs) <= 0):
                out.append(
                    f"config key '{key}.patch_probs': give {n} non-negative "
                    f"probabilities (one per patch size), not all zero"
                )
            if prior.get("patch_sizes"):
                sizes = list(prior["patch_sizes"])
            else:
                try:
                    sizes = list(padis_patch_mixture(size, levels).sizes)
                except ValueError as err:
                    out.append(f"config key '{key}': {err}")
                    continue
            if "train_patch" in prior:
                sizes.append(prior["train_patch"])
        for p in sizes:
            if p > size:
                out.append(
                    f"config key '{key}': training patch {p} is larger than data.image_size {size}"
                )
            if p % multiple:
                out.append(
                    f"config key '{key}': training size {p} is not a multiple of "
                    f"{multiple}, which a network of {levels} levels needs"
                )
        if tr["batch_size"] % tr["processes"]:
            out.append(
                f"config key '{key}' (training.batch_size): {tr['batch_size']} does not "
                f"split over {tr['processes']} processes"
            )
    return out


def _mri_checks(config: dict[str, Any]) -> list[str]:
    """The MRI task's keys against the datasets, priors, network and solvers they name."""
    mri, out = config["mri"], []
    if not mri["datasets"]:
        return out  # the task is off: nothing it names is built
    datasets = config["data"]["datasets"]
    for name in mri["datasets"]:
        if name not in datasets:
            out.append(f"config key 'mri.datasets': no dataset '{name}' in data.datasets")
        elif datasets[name]["layout"] != "multicoil":
            out.append(
                f"config key 'mri.datasets': '{name}' is {datasets[name]['layout']}; "
                f"k-space reconstruction needs a multicoil dataset"
            )
    for name in mri["priors"]:
        if name not in config["priors"]:
            out.append(f"config key 'mri.priors': no prior '{name}' in priors")
    size = mri["image_size"]
    if mri["calib_width"] > size:
        out.append(
            f"config key 'mri.calib_width': {mri['calib_width']} exceeds mri.image_size {size}"
        )
    levels = 2 ** (len(config["network"]["channel_mult"]) - 1)
    for p in [size, *(s for s in mri["sizes"] if s != WHOLE)]:
        if p % levels:
            out.append(
                f"config key 'mri.sizes' / 'mri.image_size': {p} is not a multiple of "
                f"{levels}, which the network's levels need"
            )
    for p in (s for s in mri["sizes"] if s != WHOLE):
        if p >= size:
            out.append(f"config key 'mri.sizes': patch {p} is not smaller than {size}; use whole")
    for acc, fraction in mri["accelerations"].items():
        if not str(acc).isdigit() or int(acc) < 1 or fraction > 1 / int(acc):
            out.append(
                f"config key 'mri.accelerations.{acc}': an acceleration R >= 1 with a centre "
                f"fraction at most 1 / R (the centre is part of the width / R lines)"
            )
    for solver, spec in mri["solvers"].items():
        if solver not in SOLVER_KEYS:
            out.append(
                f"config key 'mri.solvers.{solver}': unknown solver; expected one of "
                f"{sorted(SOLVER_KEYS)}"
            )
            continue
        groups = [({k: v for k, v in spec.items() if k not in ("steps", "accelerations")}, "")]
        groups += [(p, f".accelerations.{a}") for a, p in spec.get("accelerations", {}).items()]
        for params, where in groups:
            extra = sorted(set(params) - SOLVER_KEYS[solver])
            if extra:
                out.append(
                    f"config key 'mri.solvers.{solver}{where}': {extra} do not apply to "
                    f"{solver} (allowed: {sorted(SOLVER_KEYS[solver])})"
                )
    return out


def _solver_specs(config: dict[str, Any], where: str, solvers: dict, tasks=None) -> list[str]:
    """Each solver's steps and parameters: per task and per prior (``inference.solvers``
    and ``solvers.deepinv`` share the shape), and at the solver's own level (snakemake
    padis's ``inner``), which every task's parameters extend. ``tasks``: the tasks each
    solver needs parameters for (default ``inference.tasks``)."""
    tasks = config["inference"]["tasks"] if tasks is None else tasks
    out = []
    for solver, spec in solvers.items():
        key = f"{where}.{solver}"
        if solver not in SOLVER_KEYS:
            out.append(f"config key '{key}': unknown solver; expected one of {sorted(SOLVER_KEYS)}")
            continue
        for task in tasks:
            if task not in spec["tasks"]:
                out.append(f"config key '{key}.tasks': no parameters for task '{task}'")
        level = {k: v for k, v in spec.items() if k not in ("steps", "tasks", "priors")}
        groups = [(key, level)] if level else []
        groups += [(f"{key}.tasks.{t}", p) for t, p in spec["tasks"].items()]
        for prior, by_task in spec.get("priors", {}).items():
            if prior not in config["priors"]:
                out.append(f"config key '{key}.priors.{prior}': no such prior")
            groups += [(f"{key}.priors.{prior}.{t}", p) for t, p in by_task.items()]
        for place, params in groups:
            extra = sorted(set(params) - SOLVER_KEYS[solver])
            if extra:
                out.append(
                    f"config key '{place}': {extra} do not apply to {solver} "
                    f"(allowed: {sorted(SOLVER_KEYS[solver])})"
                )
        for t, params in spec["tasks"].items():
            missing = sorted(SOLVER_REQUIRED[solver] - set(level) - set(params))
            if missing:
                out.append(f"config key '{key}.tasks.{t}': {solver} needs {missing}")
    return out


def _comparison_checks(config: dict[str, Any]) -> list[str]:
    """``solvers`` (snakemake solvers) and ``uncertainty`` against the grid they extend."""
    inf, comp, unc, out = config["inference"], config["solvers"], config["uncertainty"], []
    size = config["data"]["image_size"]
    deepinv = comp["deepinv"] or {}
    for name in deepinv:
        if name not in DEEPINV_SOLVERS:
            out.append(
                f"config key 'solvers.deepinv.{name}': not a deepinv solver; expected one of "
                f"{list(DEEPINV_SOLVERS)}"
            )
    out += _solver_specs(
        config, "solvers.deepinv", {k: v for k, v in deepinv.items() if k in DEEPINV_SOLVERS}
    )
    for solver in comp["ours"]:
        if solver not in inf["solvers"]:
            out.append(
                f"config key 'solvers.ours': '{solver}' is not in inference.solvers (its grid "
                f"cells are reused)"
            )
    for section in ("solvers", "uncertainty"):
        for prior in config[section]["priors"]:
            if prior not in config["priors"]:
                out.append(f"config key '{section}.priors': '{prior}' is not a key of priors")
        for p in config[section]["sizes"]:
            if p != WHOLE and p >= size:
                out.append(f"config key '{section}.sizes': patch {p} is not smaller than {size}")
    if WHOLE not in comp["sizes"]:
        out.append("config key 'solvers.sizes': needs 'whole' (claim (b) compares with it)")
    if comp["ours"]:
        for p in comp["sizes"]:
            if p not in inf["sizes"]:
                out.append(
                    f"config key 'solvers.sizes': {p!r} is not in inference.sizes, whose "
                    f"cells solvers.ours reuses"
                )
        if comp["padding"] not in inf["paddings"]:
            out.append(
                f"config key 'solvers.padding': '{comp['padding']}' is not in inference.paddings"
            )
    for solver in unc["solvers"]:
        if solver not in inf["solvers"] and solver not in deepinv:
            out.append(
                f"config key 'uncertainty.solvers': '{solver}' is in neither inference.solvers "
                f"nor solvers.deepinv"
            )
    fig = unc["figure"]
    for key, allowed in (("prior", unc["priors"]), ("solver", unc["solvers"])):
        if fig[key] not in allowed:
            out.append(
                f"config key 'uncertainty.figure.{key}': '{fig[key]}' is not in uncertainty.{key}s"
            )
    if fig.get("dataset") not in (None, *config["data"]["datasets"]):
        out.append(f"config key 'uncertainty.figure.dataset': no dataset '{fig['dataset']}'")
    if fig["index"] >= min(d["n_eval"] for d in config["data"]["datasets"].values()):
        out.append("config key 'uncertainty.figure.index': beyond the evaluation slices")
    return out


def _padis_checks(config: dict[str, Any]) -> list[str]:
    """``padis`` (snakemake padis): its priors, tasks, solvers and tiles, before any job."""
    spec, out = config["padis"], []
    position = "position"
    for prior in spec["priors"]:
        if prior != position and prior not in config["priors"]:
            out.append(
                f"config key 'padis.priors': '{prior}' is neither a key of priors nor "
                f"'{position}' (the position-aware prior, padis.position_prior)"
            )
    if spec["position_prior"].get("scheme") != "padis":
        out.append("config key 'padis.position_prior.scheme': must be padis")
    datasets = config["data"]["datasets"]
    if spec.get("mri_dataset") and spec["mri_dataset"] not in datasets:
        out.append(f"config key 'padis.mri_dataset': '{spec['mri_dataset']}' is not a dataset")
    if spec["ct"]["name"] in datasets:
        out.append(f"config key 'padis.ct.name': '{spec['ct']['name']}' is already a dataset")
    ct = spec["ct"]
    if ct["source"] == "synthetic" and "n_train" not in ct:
        out.append("config key 'padis.ct.n_train': synthetic phantoms need a training count")
    if ct["source"] == "dicom":
        for key in ("train_dir", "eval_dir"):
            if key not in ct:
                out.append(f"config key 'padis.ct.{key}': a DICOM dataset needs it")
    mri_dataset = spec.get("mri_dataset") or next(iter(datasets))
    n_mri = datasets[mri_dataset]["n_eval"]
    if spec["n_eval"] > min(n_mri, ct["n_eval"]):
        out.append(
            f"config key 'padis.n_eval': {spec['n_eval']} images, but dataset "
            f"'{mri_dataset}' has {n_mri} evaluation slices and the CT dataset {ct['n_eval']}"
        )
    for task, params in spec["tasks"].items():
        op = operator_name(task, params)
        if op not in TASK_KEYS:
            out.append(
                f"config key 'padis.tasks.{task}': unknown operator '{op}'; expected one of "
                f"{sorted(TASK_KEYS)}"
            )
            continue
        extra = sorted(set(params) - TASK_KEYS[op] - {OPERATOR})
        if extra:
            out.append(
                f"config key 'padis.tasks.{task}': {extra} do not apply to {op} "
                f"(allowed: {sorted(TASK_KEYS[op])})"
            )
        if not params.get("sigma_n", 0) > 0:
            out.append(f"config key 'padis.tasks.{task}.sigma_n': must be > 0")
    out += _solver_specs(config, "padis.solvers", spec["solvers"], list(spec["tasks"]))
    if spec.get("tune"):  # each domain's tuning images: MRI's dataset's, and CT's own
        ops = {operator_name(t, p) for t, p in spec["tasks"].items()}
        if ops - {"ct"} and not datasets[mri_dataset].get("n_tune", 0) > 0:
            out.append(
                f"config key 'data.datasets.{mri_dataset}.n_tune': padis.tune tunes the MRI "
                "tasks on this dataset's tuning slices, but it has none"
            )
        if "ct" in ops and not ct["n_tune"] > 0:
            out.append(
                "config key 'padis.ct.n_tune': padis.tune tunes the CT tasks on the CT "
                "dataset's tuning images, but it has none"
            )
    # Tiles: smaller than the images, a multiple the networks allow, and for the
    # position-aware prior a margin on its training canvas (M <= pad).
    sides = {int(config["data"]["image_size"]), int(ct["image_size"])}
    net = {**config["network"], **spec["position_prior"].get("network", {})}
    levels = len(net["channel_mult"])
    for side in sorted(sides):
        canvas = padis_scheme(spec["position_prior"], side, levels)["pad"]
        for p in (z for z in spec["sizes"] if z != WHOLE):
            if p >= side or p % 2 ** (levels - 1):
                out.append(
                    f"config key 'padis.sizes': tiles of {p} px do not fit {side}-px images "
                    f"and a network of {levels} levels (smaller, a multiple of "
                    f"{2 ** (levels - 1)})"
                )
                continue
            margin = AxisGrid.for_axis(side, p).pad
            if position in spec["priors"] and margin > canvas:
                out.append(
                    f"config key 'padis.sizes': tiles of {p} px on {side}-px images need a "
                    f"margin of {margin} px, beyond the position-aware prior's canvas pad "
                    f"{canvas} (padis.position_prior.pad)"
                )
    return out


def _generalization_checks(config: dict[str, Any]) -> list[str]:
    """``generalization`` (snakemake generalization): its training-set sizes, priors,
    cells, domains and shift datasets, before any job. (Whether each n_train fits its
    training splits needs the data: patchpnp.pipeline.plan.GeneralizationPlan.check_sizes.)"""
    spec = config.get("generalization")
    if not spec:
        return []
    out, where = [], "config key 'generalization"
    for n in spec["n_train"]:
        if n != ALL_TRAINING and not n > 0:
            out.append(
                f"{where}.n_train': {n} training slices; expected a positive number or "
                f"'{ALL_TRAINING}'"
            )
    inf = config["inference"]
    priors = [*config["priors"], "position"]  # position: padis.position_prior
    for key, known, what in (
        ("priors", priors, "priors, or position (padis.position_prior)"),
        ("solvers", inf["solvers"], "inference.solvers"),
        ("tasks", inf["tasks"], "inference.tasks"),
        ("sizes", inf["sizes"], "inference.sizes"),
    ):
        unknown = [v for v in spec[key] if v not in known]
        if unknown:
            out.append(f"{where}.{key}': {unknown} are not in {what} ({list(known)})")
    datasets, shifts = config["data"]["datasets"], spec.get("shift_datasets") or {}
    for name in shifts:
        if name in datasets:
            out.append(
                f"{where}.shift_datasets.{name}': the name is already a key of data.datasets"
            )
    for name, ds in shifts.items():
        if config["data"]["source"] != "demo" and "contrast" in ds:
            out.append(
                f"{where}.shift_datasets.{name}.contrast': only the demo simulates a contrast"
            )
        if config["data"]["source"] == "demo" and ds["layout"] == "any":
            out.append(
                f"{where}.shift_datasets.{name}.layout': the demo builds volumes of one layout"
            )
        used = [
            f"data.datasets.{d}"
            for d, v in datasets.items()
            if ds["eval_dir"] in (v.get("train_dir"), v.get("eval_dir"))
        ]
        if used:
            out.append(
                f"{where}.shift_datasets.{name}.eval_dir': '{ds['eval_dir']}' is {used[0]}'s"
            )
    for domain, d in spec["domains"].items():
        key = f"{where}.domains.{domain}"
        for name in d["train"]:
            if name not in datasets or not datasets[name].get("train_dir"):
                out.append(
                    f"{key}.train': '{name}' is not a dataset of data.datasets with a train_dir"
                )
        if d["shift"] not in datasets and d["shift"] not in shifts:
            out.append(
                f"{key}.shift': '{d['shift']}' is neither in data.datasets nor in "
                "generalization.shift_datasets"
            )
        elif d["shift"] in d["train"]:
            out.append(
                f"{key}.shift': '{d['shift']}' is one of the domain's training datasets; the "
                "shifted evaluation must come from a dataset no prior trained on"
            )
    return out


def _inference_checks(config: dict[str, Any]) -> list[str]:
    inf, out = config["inference"], []
    size = config["data"]["image_size"]
    if "memory_budget" in inf:
        try:
            parse_budget(inf["memory_budget"])
        except MicroBatchError as err:
            key, _, why = str(err).partition(": ")
            out.append(f"config key '{key}': {why}")
    for task, params in inf["tasks"].items():
        if task not in TASK_KEYS:
            out.append(
                f"config key 'inference.tasks.{task}': unknown task; expected one of "
                f"{sorted(TASK_KEYS)}"
            )
            continue
        extra = sorted(set(params) - TASK_KEYS[task])
        if extra:
            out.append(
                f"config key 'inference.tasks.{task}': {extra} do not apply to {task} "
                f"(allowed: {sorted(TASK_KEYS[task])})"
            )
        if params["sigma_n"] <= 0:
            out.append(
                f"config key 'inference.tasks.{task}.sigma_n': must be > 0 (the solvers "
                f"and the data consistency divide by it)"
            )
        if task == "sr" and size % params.get("factor", 2):
            out.append(
                f"config key 'inference.tasks.sr.factor': data.image_size {size} is not "
                f"divisible by {params.get('factor', 2)}"
            )
    multiples = {
        2 ** (len({**config["network"], **p.get("network", {})}["channel_mult"]) - 1)
        for p in config["priors"].values()
    }
    for p in (s for s in inf["sizes"] if s != WHOLE):
        if p >= size:
            out.append(
                f"config key 'inference.sizes': patch {p} is not smaller than the "
                f"{size} x {size} image; use 'whole'"
            )
        for m in multiples:
            if p % m:
                out.append(
                    f"config key 'inference.sizes': patch {p} is not a multiple of {m}, "
                    f"which the network's levels need"
                )
    out += _solver_specs(config, "inference.solvers", inf["solvers"])
    for solver in inf.get("padding_solvers") or []:
        if solver not in inf["solvers"]:
            out.append(f"config key 'inference.padding_solvers': '{solver}' is not a solver")
    for size in inf.get("padding_sizes") or []:
        if size not in inf["sizes"] or size == WHOLE:
            out.append(
                f"config key 'inference.padding_sizes': {size!r} is not a patch size of "
                f"inference.sizes {inf['sizes']}"
            )
    return out + _report_checks(config)


def _report_checks(config: dict[str, Any]) -> list[str]:
    """The profile and the figures must name things the config defines."""
    out, prof, fig = [], config["profile"], config["figures"]
    inf = config["inference"]
    if prof["prior"] not in config["priors"]:
        out.append(f"config key 'profile.prior': '{prof['prior']}' is not a prior")
    for p in (s for s in prof["sizes"] if s != WHOLE):
        if p > prof["image_size"]:
            out.append(
                f"config key 'profile.sizes': patch {p} exceeds profile.image_size "
                f"{prof['image_size']}"
            )
    if prof["sweep_patch"] > min(prof["image_sizes"] or [prof["sweep_patch"]]):
        out.append(
            f"config key 'profile.sweep_patch': {prof['sweep_patch']} exceeds the smallest of "
            f"profile.image_sizes {prof['image_sizes']}"
        )
    if fig["prior"] not in config["priors"]:
        out.append(f"config key 'figures.prior': '{fig['prior']}' is not a prior")
    if fig["solver"] not in inf["solvers"]:
        out.append(f"config key 'figures.solver': '{fig['solver']}' is not a solver")
    if fig.get("dataset") and fig["dataset"] not in config["data"]["datasets"]:
        out.append(f"config key 'figures.dataset': '{fig['dataset']}' is not a dataset")
    n_eval = min(d["n_eval"] for d in config["data"]["datasets"].values())
    if inf.get("limit"):
        n_eval = min(n_eval, inf["limit"])
    if fig["index"] >= n_eval:
        out.append(
            f"config key 'figures.index': slice {fig['index']} is not among the {n_eval} "
            f"evaluation slices"
        )
    return out


def load_config(path: str | Path, schema_path: str | Path | None = None) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from err
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path} does not hold a mapping of keys")
    return validate_config(config, schema_path)


def check_config_command(config: str) -> str:
    """``patchpnp check-config``: validate ``config``; raises :class:`ConfigError` if invalid."""
    load_config(config)
    return f"{config}: valid"
