"""The README's two commands are the ones CI and users run."""

import re


def _commands(readme: str) -> list[str]:
    return re.findall(r"```bash\n(python3 -m venv[^\n]*)\n```", readme)


def test_readme_opens_with_the_two_commands(repo_root):
    readme = (repo_root / "README.md").read_text()
    main, test = _commands(readme)[:2]
    assert main.endswith("pip install -e . && snakemake")
    assert test.endswith("pip install -e '.[test]' && pytest")
    assert readme.index(main) < readme.index("## What runs")


def test_ci_runs_exactly_the_readme_test_command(repo_root):
    test = _commands((repo_root / "README.md").read_text())[1]
    ci = (repo_root / ".ci" / "run").read_text().splitlines()
    assert test in ci


def test_ci_lints_before_the_tests(repo_root):
    ci = (repo_root / ".ci" / "run").read_text()
    test = _commands((repo_root / "README.md").read_text())[1]
    for lint in ("snakemake --lint", "snakefmt --check", "ruff check", "ruff format --check"):
        assert lint in ci and ci.index(lint) < ci.rindex(test), lint


def test_the_main_install_brings_what_the_report_needs(repo_root):
    """The run's last line recommends `snakemake --report`, which needs pygments: the main
    dependencies must bring it (the test extra happens to, so the suite alone cannot tell)."""
    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    main = [re.sub(r"\s", "", d) for d in project["dependencies"]]
    snakemake = [d for d in main if re.match(r"snakemake(\[|[<>=!~]|$)", d)]
    assert snakemake, "snakemake is not a main dependency"
    extras = re.search(r"\[([^\]]*)\]", snakemake[0])
    has_reports = extras is not None and {"reports", "all"} & set(extras[1].split(","))
    assert has_reports or any(re.match(r"pygments\b", d, re.I) for d in main)
    assert (repo_root / "LICENSE").read_text().startswith("MIT License")
    assert project["license"] == "MIT"
