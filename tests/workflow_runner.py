"""Run the Snakemake workflow of this repository in a scratch folder."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# The folder of the job server's ``patchpnp`` client (tests/job_server.py), first on the
# runs' PATH while the session's server runs (tests/conftest.py starts it).
JOB_COMMANDS: list[Path] = []
UNREACHABLE_LPIPS_SOURCE = "file:///nonexistent/patchpnp-tests/alexnet-owt-7be5be79.pth"


# The smallest EDM2 U-Net the tests train: two levels, one block each.
TINY_NETWORK = {
    "img_channels": 1,
    "model_channels": 8,
    "channel_mult": [1, 2],
    "num_blocks": 1,
    "attn_levels": [1],
    "channels_per_head": 8,
}


def write_config(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "test_config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(workdir: Path, *args: str, configfile: Path | None = None) -> list[str]:
    """``snakemake ARGS`` on the repository's Snakefile with ``workdir`` as working
    directory. The config file goes last: --configfile takes several values, so a
    target name after it would be read as one more config file."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    return cmd


def runner_env(extra_env: dict | None = None, base_env: dict | None = None) -> dict:
    """The rules call the ``patchpnp`` command, so the interpreter's bin folder goes
    first on PATH (the tests may run without an activated virtual environment), after
    the job server's client while it runs (:data:`JOB_COMMANDS`).
    ``base_env`` replaces this process's environment as the start (a run in a
    background thread must not see a test's monkeypatched variables)."""
    env = dict(os.environ if base_env is None else base_env)
    bins = [*JOB_COMMANDS, Path(sys.executable).parent]
    env["PATH"] = os.pathsep.join([*map(str, bins), env.get("PATH", "")])
    env.update(extra_env or {})
    return env


def snakemake(
    workdir: Path,
    *args: str,
    configfile: Path | None = None,
    timeout: int = 600,
    extra_env: dict | None = None,
    base_env: dict | None = None,
) -> subprocess.CompletedProcess:
    """Run ``snakemake`` (see :func:`snakemake_command`) and capture its output."""
    return subprocess.run(
        snakemake_command(workdir, *args, configfile=configfile),
        capture_output=True,
        text=True,
        env=runner_env(extra_env, base_env),
        timeout=timeout,
        cwd=workdir,
    )


JOB = re.compile(r"^(?:local)?rule (\w+):$")


def planned_jobs(text: str) -> list[tuple[str, list[str]]]:
    """(rule, outputs) for every job a dry run lists."""
    jobs: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = JOB.match(line.strip())
        if match:
            jobs.append((match.group(1), []))
        elif jobs and line.startswith("    output: "):
            jobs[-1][1].extend(p.strip() for p in line[len("    output: ") :].split(","))
    return jobs


def dry_run(
    workdir: Path, config: dict, env: dict | None = None, base_env: dict | None = None
) -> list[tuple[str, list[str]]]:
    """The jobs ``snakemake -n`` plans in ``workdir`` under ``config`` (written to
    ``workdir/alt``, so the run's own config file stays as it was)."""
    configfile = write_config(workdir / "alt", config)
    res = snakemake(workdir, "-n", configfile=configfile, extra_env=env, base_env=base_env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    return planned_jobs(res.stdout)


def result_files(results: Path) -> dict[str, int]:
    """Modification times of every result (logs and benchmarks aside)."""
    return {
        str(p.relative_to(results)): p.stat().st_mtime_ns
        for p in results.rglob("*")
        if p.is_file() and "logs" not in p.relative_to(results).parts
    }


def copy_workdir(source: Path, dest: Path) -> Path:
    """A copy of a Snakemake working folder that the copy's runs take as built: every
    file with its modification time (copy2), and Snakemake's metadata, so a copied
    output is neither missing nor older than its inputs and no rerun trigger fires.
    The locks and run logs of the source stay behind."""
    shutil.copytree(
        source,
        dest,
        symlinks=True,
        dirs_exist_ok=True,
        ignore=lambda folder, names: (
            {"locks", "log"} & set(names) if Path(folder).name == ".snakemake" else set()
        ),
    )
    return dest


def tiny_demo_config() -> dict:
    """The smallest demo: one dataset, a handful of 32 px volumes."""
    return {
        "seed": 3,
        "device": "cpu",
        "fastmri_root": None,
        "data": {
            "source": "demo",
            "image_size": 16,
            "crop_size": 32,
            "edge_slices": 1,
            "scale_percentile": 99.5,
            "volumes_per_shard": 2,
            "datasets": {
                "mni_t1_singlecoil": {
                    "layout": "singlecoil",
                    "train_dir": "mni_t1_singlecoil_train",
                    "eval_dir": "mni_t1_singlecoil_val",
                    "n_eval": 2,
                    "n_tune": 1,
                }
            },
            "demo": {
                "recon_size": 32,
                "train_volumes": 3,
                "train_slices": 3,
                "eval_slices": 3,
                "coils": 2,
                "readout_oversampling": 1,
                "noise": 0.01,
            },
        },
        "network": copy.deepcopy(TINY_NETWORK),
        "training": {
            "batch_size": 4,
            "steps": 3,
            "lr_ref": 0.01,
            "ref_steps": 10,
            "warmup_steps": 1,
            "ema_sigma_rel": 0.1,
            "P_mean": -0.8,
            "P_std": 1.6,
            "checkpoint_every": 2,
            "processes": 1,
            "threads": 1,
            "max_memory_mb": 64,
            "precision": "auto",
        },
        "priors": {"whole": {"scheme": "whole"}, "patch": {"scheme": "patch", "train_patch": 8}},
        "inference": {
            "batch_images": 2,
            "patch_batch": None,
            "precision": "float32",
            "limit": None,
            "threads": 1,
            "sizes": ["whole", 8],
            "paddings": ["reflect", "zeros"],
            "padding_solvers": ["diffpir"],
            "tasks": {"denoise": {"sigma_n": 0.1}},
            "solvers": {
                "diffpir": {
                    "steps": 2,
                    "tasks": {"denoise": {"lam": 1.0, "zeta": 0.3, "sigma_start": 0.3}},
                },
                "dps": {"steps": 2, "tasks": {"denoise": {"zeta": 0.3, "sigma_start": 0.3}}},
            },
        },
        "profile": {
            "prior": "patch",
            "solvers": ["diffpir"],
            "image_size": 16,
            "sizes": [8, "whole"],
            # At the fixed image size: the image-size sweep's two configurations are the
            # other sweep's, measured once (four fresh processes, not six).
            "image_sizes": [16],
            "sweep_patch": 8,
            "steps": 1,
            "threads": 1,
        },
        "paper_profile": {
            "network_config": "config.yaml",
            "solvers": ["diffpir"],
            "image_sizes": [32],
            "sizes": [16],
            "memory_budget": "25%",
            "memory_limit": "50%",
            "sampled_chunks": 2,
            "threads": 1,
        },
        # No multicoil dataset: the MRI task is off (tiny_mri_config turns it on).
        "mri": {
            "in_all": False,
            "datasets": [],
            "image_size": 24,
            "calib_width": 12,
            "coils": None,
            "masks": ["equispaced"],
            "accelerations": {4: 0.08},
            "sigma_n": 0.01,
            "cg_iters": 3,
            "priors": ["whole", "patch"],
            "training": {"steps": 3},
            "sizes": ["whole", 8],
            "padding": "reflect",
            "patch_batch": None,
            "batch_images": 2,
            "threads": 1,
            "precision": "float32",
            "limit": None,
            "solvers": {
                "diffpir": {"steps": 2, "lam": 1.0, "zeta": 0.3, "sigma_start": 0.3},
                "dps": {"steps": 2, "zeta": 0.3, "sigma_start": 0.3},
            },
            "baselines": {
                "sense": {"iters": 3, "lam_center": 0.01, "decades": 1, "points": 3},
                "cs_wavelet": {"iters": 5, "lam_center": 0.001, "decades": 1, "points": 3},
            },
        },
        "solvers": {
            "in_all": False,
            "ours": ["diffpir"],
            "priors": ["patch"],
            "sizes": ["whole", 8],
            "padding": "reflect",
            "tune": {"per_decade": 1, "decades": 1.0},
            "deepinv": {
                "dinv_ilvr": {"steps": 2, "tasks": {"denoise": {"weight": 1.0, "sigma_start": 0.3}}}
            },
        },
        "uncertainty": {
            "in_all": False,
            "samples": 2,
            "priors": ["patch"],
            "solvers": ["diffpir"],
            "sizes": ["whole", 8],
            "padding": "reflect",
            "figure": {"dataset": None, "prior": "patch", "solver": "diffpir", "index": 1},
        },
        # snakemake resolution: the grid on 2 more slices.
        "resolution": {
            "in_all": False,
            "n_eval": 4,
            "batch_images": 4,
            "bars": {"cell_db": 0.15, "pooled_db": 0.05},
        },
        # snakemake seeds: the priors once more under another training seed.
        "seeds": {"in_all": False, "extra": 1},
        # snakemake padis: three priors, two solvers, deblurring and 20-view CT on
        # 16-px synthetic phantoms, whole and 4-px tiles (the canvas pad is 16 / 4 = 4).
        "padis": {
            "in_all": False,
            "mri_dataset": None,
            "n_eval": 2,
            "batch_images": 2,
            "patch_batch": None,
            "ct": {
                "name": "ct_ellipses_synthetic",
                "source": "synthetic",
                "image_size": 16,
                "n_train": 6,
                "n_eval": 2,
                "n_tune": 0,
            },
            "position_prior": {"scheme": "padis"},
            "priors": ["whole", "patch", "position"],
            "sizes": ["whole", 4],
            "padding": "zeros",
            "tasks": {
                "deblur": {"operator": "deblur", "kernel": "uniform", "size": 3, "sigma_n": 0.02},
                "ct20": {"operator": "ct", "views": 20, "sigma_n": 0.02},
            },
            "solvers": {
                "padis_dps": {
                    "steps": 2,
                    "inner": 2,
                    "tasks": {
                        "deblur": {"zeta": 0.3, "sigma_start": 0.3},
                        "ct20": {"zeta": 1.0, "sigma_start": 0.3},
                    },
                },
                "dps": {
                    "steps": 2,
                    "tasks": {
                        "deblur": {"zeta": 0.3, "sigma_start": 0.3},
                        "ct20": {"zeta": 1.0, "sigma_start": 0.3},
                    },
                },
            },
        },
        # snakemake generalization: the two priors again on 4 of the 9 training slices,
        # in distribution and on 2 FLAIR-like slices (a third, PaDIS's position-aware
        # prior, is planned in tests/test_generalization_plan.py and run in CI's paper
        # config: here it would add 9 processes to the suite).
        "generalization": {
            "in_all": False,
            "n_train": [4, "all"],
            "priors": ["whole", "patch"],
            "solvers": ["diffpir"],
            "tasks": ["denoise"],
            "sizes": ["whole", 8],
            "padding": "reflect",
            "permutation_seed": None,
            "domains": {
                "mni_t1": {"train": ["mni_t1_singlecoil"], "shift": "mni_flair_singlecoil"}
            },
            "shift_datasets": {
                "mni_flair_singlecoil": {
                    "layout": "singlecoil",
                    "eval_dir": "mni_flair_singlecoil_val",
                    "n_eval": 2,
                    "contrast": "flair",
                }
            },
        },
        "figures": {"dataset": None, "prior": "patch", "solver": "diffpir", "index": 1},
        # Hermetic: lpips_weights never downloads in the tests (LPIPS is n/a unless torch
        # hub's cache holds the weights) and fails at once, with or without a network.
        "metrics": {"lpips": "auto", "lpips_source": UNREACHABLE_LPIPS_SOURCE},
    }


def tiny_mri_config() -> dict:
    """The tiny demo with a multicoil dataset whose k-space ``snakemake mri`` reconstructs."""
    config = tiny_demo_config()
    config["data"]["datasets"]["mni_t1_multicoil"] = {
        "layout": "multicoil",
        "train_dir": "mni_t1_multicoil_train",
        "eval_dir": "mni_t1_multicoil_val",
        "n_eval": 2,
        "n_tune": 1,
    }
    config["mri"]["datasets"] = ["mni_t1_multicoil"]
    return config
