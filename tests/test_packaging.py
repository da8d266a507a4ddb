"""Packaging: the wheel carries the whole package (schema included) and works on its own;
the lock file and the conda env pin the tested environment."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "workflow" / "src"
LOCK = ROOT / "requirements.lock"
CONDA_ENV = ROOT / "workflow" / "envs" / "patchpnp.yaml"

# Not part of a build: building from a copy keeps the working tree clean and keeps a
# stale build/lib (setuptools copies it into the wheel) from hiding a missing module.
_NOT_COPIED = {".git", ".venv", "results", "build", "dist", ".snakemake"}


def _copy_ignore(folder: str, names: list[str]) -> set[str]:
    top = Path(folder).resolve() == ROOT
    return {
        n
        for n in names
        if (top and n in _NOT_COPIED)
        or n in {"__pycache__", ".pytest_cache", ".ruff_cache"}
        or n.endswith((".egg-info", ".pyc"))
    }


def _setuptools_problem() -> str | None:
    """Why the build backend cannot run here (a reason outside the project), or None."""
    try:
        import setuptools
    except ImportError:
        return f"setuptools is not installed in {sys.executable} (needed by --no-build-isolation)"
    major = int(setuptools.__version__.split(".")[0])
    if major < 77:  # pyproject.toml's [build-system] requires setuptools>=77
        return f"setuptools {setuptools.__version__} < 77 in {sys.executable}"
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    problem = _setuptools_problem()
    if problem:
        pytest.skip(f"cannot build the wheel offline: {problem}")
    work = tmp_path_factory.mktemp("wheel")
    tree = work / "tree"
    shutil.copytree(ROOT, tree, symlinks=True, ignore=_copy_ignore)
    out = work / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", str(tree), "--no-deps"]
    cmd += ["--no-build-isolation", "--no-index", "-w", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout}\n{done.stderr}"
    wheels = sorted(out.glob("patchpnp-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _dist_info(names: list[str], file: str) -> str:
    found = [n for n in names if re.fullmatch(r"patchpnp-[^/]+\.dist-info/" + re.escape(file), n)]
    assert len(found) == 1, f"{file} in the wheel: {found}"
    return found[0]


@pytest.mark.slow
def test_wheel_contains_the_package_and_the_entry_point(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = zf.read(_dist_info(names, "entry_points.txt")).decode()
    contents = set(names)
    assert "patchpnp/pipeline/config.schema.yaml" in contents
    assert "patchpnp/cli.py" in contents

    package = SRC / "patchpnp"
    inits = sorted(p.relative_to(SRC).as_posix() for p in package.rglob("__init__.py"))
    assert "patchpnp/__init__.py" in inits and len(inits) > 1, inits
    missing = [p for p in inits if p not in contents]
    assert not missing, f"subpackages missing from the wheel: {missing}"
    modules = sorted(
        p.relative_to(SRC).as_posix()
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts and (p.parent / "__init__.py").is_file()
    )
    missing = [p for p in modules if p not in contents]
    assert not missing, f"modules missing from the wheel: {missing}"

    parser = configparser.ConfigParser()
    parser.read_string(entry_points)
    assert parser.get("console_scripts", "patchpnp") == "patchpnp.cli:main"


@pytest.mark.slow
def test_installed_wheel_loads_its_schema(wheel, tmp_path):
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index"]
    install += ["--target", str(site), str(wheel)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"

    # PYTHONPATH comes before site-packages and the editable install's .pth entry
    # (workflow/src, appended after them), so the wheel's copy is the one imported;
    # the printed __file__ proves it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(site)
    code = (
        "import patchpnp; print(patchpnp.__file__); "
        "from patchpnp.pipeline.config import load_schema; print(load_schema()['type'])"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    where, schema_type = run.stdout.split()
    assert Path(where).resolve().is_relative_to(site.resolve()), where
    assert schema_type == "object"


def _lock() -> tuple[list[str], dict[str, str]]:
    lines = LOCK.read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    pins = {}
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s=;]+)", line.strip())
        assert match, f"not an exact pin in requirements.lock: {line!r}"
        pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return header, pins


def test_lock_pins_the_tested_environment():
    header, pins = _lock()
    assert len(header) == 3 and any("pip freeze" in line for line in header), header
    for name in ("torch", "snakemake", "pandas"):
        assert name in pins, f"{name} is not pinned"
    assert "patchpnp" not in pins


@pytest.mark.slow
def test_lock_pins_every_dependency(wheel):
    """The main and test dependencies all appear, so a new one in pyproject.toml cannot
    slip past a stale lock."""
    _, pins = _lock()
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(_dist_info(zf.namelist(), "METADATA")).decode()
    for requirement in Parser().parsestr(metadata).get_all("Requires-Dist") or []:
        if "extra ==" in requirement and 'extra == "test"' not in requirement:
            continue
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement)[0]).lower()
        assert name in pins, f"{requirement!r} is not pinned in requirements.lock"


def test_conda_env_installs_the_lock_then_the_checkout():
    header, _ = _lock()
    env = yaml.safe_load(CONDA_ENV.read_text())
    deps = env["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert pip == ["-r ../../requirements.lock", "-e ../.."]
    # pip resolves them from the env file's folder
    assert (CONDA_ENV.parent / "../../requirements.lock").resolve() == LOCK.resolve()
    assert (CONDA_ENV.parent / "../..").resolve() == ROOT

    python = re.search(r"Python (\d+\.\d+)\.\d+", "\n".join(header))
    assert python, header
    assert f"python ={python[1]}" in deps
