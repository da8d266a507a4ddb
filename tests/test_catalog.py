"""The catalog's usage file says what the workflow really supports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_catalog_usage_file_matches_the_workflow():
    usage = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment", "report"}
    assert set(usage["mandatory-flags"]) == {"desc", "flags"}
    stack = usage["software-stack-deployment"]
    assert set(stack) == {"conda", "apptainer", "apptainer+conda"}
    rules = "\n".join(p.read_text() for p in sorted((ROOT / "workflow/rules").glob("*.smk")))
    if stack["conda"]:
        # Every conda directive names an env file that exists.
        envs = re.findall(r"conda:\s*\n\s*(\S+)", rules)
        assert envs, "conda: true but no rule has a conda environment"
        for env in envs:
            # Relative to the rule file, as Snakemake resolves it.
            assert (ROOT / "workflow/rules" / env.strip("\"'")).resolve().exists(), env
    assert not stack["apptainer"] and not stack["apptainer+conda"]
    assert "container:" not in rules
    if usage["report"]:
        assert re.search(r"^report:\s*\"workflow/report/", (ROOT / "Snakefile").read_text(), re.M)
