"""Run the Snakemake workflow of this repository in a scratch folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def write_config(folder: Path, config: dict) -> Path:
    path = folder / "test_config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(
    workdir: Path, *args: str, configfile: Path | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """``snakemake`` on the repository's Snakefile with ``workdir`` as working directory.

    The rules call the ``patchpnp`` command, so the interpreter's bin folder goes
    first on PATH (the tests may run without an activated virtual environment).
    """
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
    ]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=workdir
    )


def tiny_demo_config() -> dict:
    """The smallest demo: one dataset, a handful of 32 px volumes."""
    return {
        "seed": 3,
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
    }
