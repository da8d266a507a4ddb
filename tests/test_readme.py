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
