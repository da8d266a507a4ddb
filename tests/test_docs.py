"""The documentation lives in the repository: no file cites a document outside it, none
points at a tracker's issue numbers instead of saying what a thing is, and every
citation of docs/methods.md names a section that exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHODS = ROOT / "docs" / "methods.md"

# Built from parts, so that this file does not match what it looks for.
OUTSIDE_SPEC = "ALGORITHMS" + ".md"
ISSUE_NUMBER = re.compile(r"\bissues?\s*#?\d+", re.IGNORECASE)
CITATION = re.compile(
    r"\b(?:docs/)?methods\.md\s+sections?\s+(\d+(?:\s*(?:-|,|and)\s*\d+)*)", re.IGNORECASE
)
SECTION_HEADING = re.compile(r"^## (\d+)\. \S", re.MULTILINE)


def repository_files() -> list[Path]:
    """Tracked files and new ones git does not ignore (what a commit would hold)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    paths = [ROOT / p for p in out.decode().split("\0") if p]
    return [p for p in paths if p.is_file()]


def texts() -> list[tuple[str, str]]:
    found = []
    for path in repository_files():
        try:
            found.append((path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue  # binary files hold no prose
    return found


def cited_sections(text: str) -> list[tuple[str, int]]:
    """``(citation, section number)`` for every section a methods.md citation names;
    ranges (``sections 4-7``) name every section in between."""
    out = []
    for m in CITATION.finditer(text):
        for part in re.split(r"\s*(?:,|and)\s*", m.group(1)):
            lo, _, hi = part.partition("-")
            for n in range(int(lo), int(hi or lo) + 1):
                out.append((" ".join(m.group(0).split()), n))
    return out


def methods_sections() -> list[int]:
    return [int(n) for n in SECTION_HEADING.findall(METHODS.read_text(encoding="utf-8"))]


def line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def test_no_file_cites_the_outside_specification():
    hits = [
        f"{name}:{line_of(text, m.start())}"
        for name, text in texts()
        for m in re.finditer(re.escape(OUTSIDE_SPEC), text)
    ]
    assert not hits, f"cite docs/methods.md instead of {OUTSIDE_SPEC}: {hits}"


def test_no_file_refers_to_an_issue_number():
    hits = [
        f"{name}:{line_of(text, m.start())}: {' '.join(m.group(0).split())}"
        for name, text in texts()
        for m in ISSUE_NUMBER.finditer(text)
    ]
    assert not hits, f"say what the thing is, not which issue asked for it: {hits}"


def test_methods_has_its_sections_in_order():
    assert methods_sections() == list(range(16))


def test_every_methods_citation_names_a_section_that_exists():
    sections = set(methods_sections())
    bad = [
        f"{name}: '{citation}' (no section {n})"
        for name, text in texts()
        for citation, n in cited_sections(text)
        if n not in sections
    ]
    assert not bad, bad
    assert any(cited_sections(text) for _, text in texts()), "no citation found at all"


def test_the_readme_links_the_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for doc in ("docs/usage.md", "docs/methods.md", "docs/results.md"):
        assert f"]({doc})" in readme, doc


def test_the_detectors_see_what_they_look_for():
    # A test that cannot fail proves nothing: each pattern must match its targets.
    for text in ("issue" + " 14", "Issue" + " #14", "issues" + " 12-14", "issue" + "\n26"):
        assert ISSUE_NUMBER.search(text), text
    for text in ("the issue's bar", "issues with tiles", "tissue 4"):
        assert not ISSUE_NUMBER.search(text), text
    cited = cited_sections("docs/methods.md section 7; methods.md sections 4-6 and 9;")
    assert [n for _, n in cited] == [7, 4, 5, 6, 9]
    assert [n for _, n in cited_sections("docs/methods.md\nsections 10, 12")] == [10, 12]
