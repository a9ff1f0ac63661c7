"""The docs a newcomer reads: short README, links that resolve, quick-start commands that exist."""

import re

import pytest

from brainlit.__main__ import COMMANDS
from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]+\]\(([^)\s]+)\)")


def anchors(page) -> set[str]:
    """GitHub's heading anchors of a markdown page."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    links = [link for link in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:", link)]
    for link in links:
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {link} points at nothing"
        if anchor:
            assert anchor in anchors(target), f"{page.name}: no heading #{anchor} in {target.name}"


def test_the_readme_is_short_and_its_quick_start_is_two_commands_that_exist():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    quick_start = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].split() for line in quick_start.strip().splitlines()]
    assert commands == [["make", "demo"], ["make", "test"]]
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M))
    assert {"demo", "test"} <= targets


def test_every_brainlit_command_in_the_docs_exists():
    used = {match for page in PAGES for match in re.findall(r"python -m brainlit (?:--verbose )?([a-z-]+)",
                                                             page.read_text())}
    assert used and used <= set(COMMANDS), used - set(COMMANDS)


@pytest.mark.parametrize("page", sorted((REPO / "docs" / "research").glob("*.md")), ids=lambda p: p.name)
def test_every_research_page_opens_with_a_summary_of_at_most_30_lines(page):
    lines = page.read_text().splitlines()
    first_section = next(i for i, line in enumerate(lines) if line.startswith("## "))
    summary = [line for line in lines[1:first_section] if line.strip()]
    assert lines[0].startswith("# ") and 0 < len(summary) <= 30, f"{page.name}: {len(summary)} summary lines"
