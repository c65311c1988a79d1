"""Every relative link in the README and in docs/*.md points at a file that exists, and every anchor
(``page.md#heading``) at a heading of that page: the pages link to each other and to their pictures, and
a moved section or a renamed image should fail here, not in a reader's browser."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```.*?^```", re.S | re.M)           # fenced code blocks: their brackets are code
CODE_SPAN = re.compile(r"`[^`\n]*`")                        # inline code: `x[0](1)` is not a link
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target), ![alt](target)
IMG_SRC = re.compile(r"<img\s[^>]*src=\"([^\"]+)\"")       # <img src="..."> in the side-by-side pictures
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _anchors(page: Path) -> set:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to hyphens,
    a repeated heading numbered -1, -2, ..."""
    seen, anchors = {}, set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _relative_links(page: Path) -> list:
    text = _prose(page.read_text(encoding="utf-8"))
    targets = LINK.findall(text) + IMG_SRC.findall(text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # skip https:, mailto:, ...


def _broken_links(page: Path) -> list:
    """Each relative link of ``page`` whose file, or whose heading, is missing, with what is missing."""
    broken = []
    for target in _relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading of {file.name} has the anchor #{anchor}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = _broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)} has broken links:\n  " + "\n  ".join(broken)


def test_the_checker_sees_links_and_catches_broken_ones(tmp_path):
    """A check that cannot fail is worth nothing: a page with a good and a bad link of each kind."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n## The 2-D toys\n\n[ok](page.md#the-2-d-toys) ![ok](images/a.png) "
                    '<img src="images/a.png"> [web](https://example.org) `[code](not/a/link.md)`\n'
                    "[bad](missing.md) ![bad](images/b.png) [bad anchor](page.md#nowhere) [here](#a-page)\n"
                    "```\n[in a code block](ignored.md)\n```\n", encoding="utf-8")
    assert _broken_links(page) == ["missing.md: no such file", "images/b.png: no such file",
                                   "page.md#nowhere: no heading of page.md has the anchor #nowhere"]
