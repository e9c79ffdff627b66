"""The docs a user reads: every relative link resolves, the README stays short, and every docs page
the code cites exists."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
PAGES += sorted((REPO / "web" / "docs").glob("*.md"))  # the editor's node help
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_DIRS = ("attention", "samplers", "nodes", "scoring", "video")


def prose_lines(text):
    """The lines outside fenced code blocks."""
    inside = False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside:
            yield line


def github_anchors(text):
    """The #anchors GitHub gives the headings of a Markdown file (duplicates get -1, -2, ...)."""
    anchors, seen = set(), {}
    for line in prose_lines(text):
        match = re.match(r"#{1,6} (.*)", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_github_anchors_follow_githubs_rules():
    text = "# AID Sampler (`AIDSampler`)\n## Cost\n```\n# not a heading\n```\n## Cost\n"
    assert github_anchors(text) == {"aid-sampler-aidsampler", "cost", "cost-1"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall("\n".join(prose_lines(page.read_text()))):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in github_anchors(file.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_readme_is_short():
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= 250, f"README.md has {lines} lines; move detail into docs/"


def test_readme_links_every_feature_page():
    readme = (REPO / "README.md").read_text()
    missing = [p.name for p in (REPO / "docs").glob("*.md") if f"docs/{p.name}" not in readme]
    assert not missing, f"README.md does not link {missing}"


def cited_docs():
    """(source file, cited name) for every docs/<name>.md and bare algorithm/editing/dit.md citation."""
    for folder in CODE_DIRS:
        for source in sorted((REPO / folder).rglob("*.py")):
            text = source.read_text()
            for name in re.findall(r"docs/([\w\-]+\.md)", text):
                yield source, f"docs/{name}"
            for name in re.findall(r"(?<![\w/\-])(algorithm|editing|dit)\.md", text):
                yield source, f"{name}.md"


def test_docs_pages_cited_in_the_code_exist():
    wrong = [
        f"{source.relative_to(REPO)} cites {name}"
        for source, name in cited_docs()
        if not name.startswith("docs/") or not (REPO / name).exists()
    ]
    assert not wrong, "; ".join(wrong)
