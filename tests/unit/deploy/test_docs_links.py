"""The documentation stands on its own: no citation of documents outside the repository, and
every relative markdown link lands on a file and a heading that exist.

Comments and docs used to cite "reference §N" of a study that lives outside the repository; a
newcomer could follow none of them. Anchors are GitHub's: the heading text lower-cased, stripped
of punctuation, spaces turned into hyphens, and `-1`, `-2` … appended to repeats.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
README = ROOT / "README.md"

# Documents that live outside the repository, and the section sign their citations used.
FORBIDDEN = ("§", "calico-reference", "landscape.md", "measurements.md")

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
_LINK = re.compile(r"(?<!!)\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"(`+)(?:.+?)\1")
_INLINE_LINK = re.compile(r"!?\[((?:[^\]\\]|\\.)*)\]\([^)]*\)")
_SLUG_DROP = re.compile(r"[^\w\- ]")
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _scanned_files() -> list[Path]:
    files = [README]
    for top in (ROOT / "src", DOCS):
        files += sorted(p for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return files


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:  # a binary file (an image) cites nothing
        return None


def _prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a markdown text, fenced code blocks left out."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        opening = _FENCE.match(line)
        if opening:
            marker = opening.group(1)
            if fence is None:
                fence = marker
            elif marker == fence:
                fence = None
            continue
        if fence is None:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (before de-duplication)."""
    text = _INLINE_LINK.sub(r"\1", heading)
    text = text.replace("`", "").replace("*", "")
    return _SLUG_DROP.sub("", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a markdown text defines: its headings' slugs and explicit HTML anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose_lines(text):
        found.update(_HTML_ANCHOR.findall(line))
        heading = _HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of every markdown link outside code."""
    for number, line in _prose_lines(text):
        for target in _LINK.findall(_CODE_SPAN.sub("", line)):
            yield number, target


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _broken_link(source: Path, target: str, cache: dict[Path, set[str]]) -> str | None:
    if _EXTERNAL.match(target):
        return None
    path_part, _, anchor = target.partition("#")
    destination = (source.parent / path_part).resolve() if path_part else source
    if not destination.exists():
        return f"{path_part}: no such file"
    if not anchor:
        return None
    if destination.suffix != ".md":
        return f"#{anchor}: only markdown files have anchors"
    if destination not in cache:
        cache[destination] = anchors(destination.read_text(encoding="utf-8"))
    if anchor not in cache[destination]:
        return f"#{anchor}: no such heading in {_shown(destination)}"
    return None


# --------------------------------------------------------------------------- the checker itself


def test_slug_follows_github() -> None:
    assert slug("What is computed") == "what-is-computed"
    assert slug("Rule identity (the hash scheme)") == "rule-identity-the-hash-scheme"
    assert (
        slug("How the kernel layer uses this (`felis.dataplane.kernel`)")
        == "how-the-kernel-layer-uses-this-felisdataplanekernel"
    )
    assert slug("1. Saturating load: medians and within-round ratios") == (
        "1-saturating-load-medians-and-within-round-ratios"
    )
    assert slug("Why doNotTrack needs both directions") == "why-donottrack-needs-both-directions"
    assert slug("See [the page](x.md) here") == "see-the-page-here"


def test_anchors_number_repeats_and_skip_code() -> None:
    text = '# Top\n## Notes\n```sh\n# not a heading\n```\n## Notes\n<a id="kept"></a>\n'
    assert anchors(text) == {"top", "notes", "notes-1", "kept"}


def test_links_are_found_outside_code_only() -> None:
    text = "see [a](a.md#x) and `[b](b.md)`\n```\n[c](c.md)\n```\n![img](i.png) [d](http://e)\n"
    assert list(links(text)) == [(1, "a.md#x"), (5, "http://e")]


def test_broken_links_are_reported(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Here\n", encoding="utf-8")
    cache: dict[Path, set[str]] = {}
    assert _broken_link(page, "page.md#here", cache) is None
    assert _broken_link(page, "#here", cache) is None
    assert _broken_link(page, "https://example.org/x.md#y", cache) is None
    assert _broken_link(page, "missing.md", cache) == "missing.md: no such file"
    assert _broken_link(page, "page.md#gone", cache) is not None


# --------------------------------------------------------------------------- the repository


def test_no_citation_of_documents_outside_the_repository() -> None:
    problems = []
    for path in _scanned_files():
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            problems += [
                f"{path.relative_to(ROOT)}:{number}: cites {word!r}: point to a document in "
                "this repository (docs/calico-semantics.md, …) or drop the citation"
                for word in FORBIDDEN
                if word in line
            ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "page", [README, *sorted(DOCS.rglob("*.md"))], ids=lambda p: str(p.relative_to(ROOT))
)
def test_relative_links_resolve(page: Path) -> None:
    cache: dict[Path, set[str]] = {}
    problems = [
        f"{page.relative_to(ROOT)}:{number}: ({target}) {reason}"
        for number, target in links(page.read_text(encoding="utf-8"))
        if (reason := _broken_link(page, target, cache)) is not None
    ]
    assert not problems, "\n".join(problems)
