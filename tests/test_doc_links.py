"""Every relative link of README.md and docs/*.md points to a file of the repository, and its
#anchor to a heading of that file; no page points outside the repository (a clone has only it)."""
import re

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*$", re.MULTILINE)


def prose(page):
    """The page without its fenced code blocks, whose brackets and # lines are not markdown."""
    return FENCE.sub("", page.read_text())


def anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page):
    seen, result = {}, set()
    for heading in HEADING.findall(prose(page)):
        base = anchor(heading)
        result.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return result


def relative_links(page):
    return [target for target in LINK.findall(prose(page)) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_resolve_inside_the_repository(page):
    broken = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(f"{target}: no such file in the repository")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{target}: no heading #{fragment}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_anchor_follows_github():
    assert anchor("Quick start (fresh Debian machine, Python 3.11, no GPU)") == \
        "quick-start-fresh-debian-machine-python-311-no-gpu"
    assert anchor("Pruning while training: `--task {a,b}_pruning`") == "pruning-while-training---task-ab_pruning"
    assert anchor("Results: translation (2026-12-02)") == "results-translation-2026-12-02"


def test_no_page_points_at_the_shared_folder_beside_the_repository():
    assert not [page.name for page in PAGES if "../shared/" in page.read_text()]
