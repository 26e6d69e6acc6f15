"""Every file README.md and docs/*.md cite is one the repository has: a relative link, a path
inside the repository (`storage/outbox.py`, `tests/test_delivery*.py`, `bot/`), or a file
named on its own (`CHANGELOG.md`, or `core.py` in a list of bot/pipeline's modules: some
folder of the project has it). A citation that names nothing leaves a reader searching."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO

EXT = r"(?:py|md|sql|toml|txt|cfg|ini|yml|yaml|json|xml|sh)"
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
# Not inside a URL, an absolute path or a longer word (the look-behind and look-ahead).
FILE = re.compile(r"(?<![\w/.:@~-])((?:[\w*-][\w*.-]*/)*[\w*-][\w*.-]*\." + EXT + r")(?![\w/-])")
FOLDER = re.compile(r"(?<![\w/.:@~-])((?:bot|storage|tests|bench|docs)/(?:[\w-]+/)*[\w-]*)(?![\w.*-])")
FOLDERS = ("bot", "storage", "tests", "bench", "docs")
# Files named in the documents that are not the project's to have.
NOT_OURS = {"robots.txt"}  # a web site's file, which check-feed and /addfeed read


def cited(text: str) -> set[str]:
    """The paths a document cites: link targets (without their #anchor), file names, folders."""
    found = {m.group(1).split("#")[0] for m in LINK.finditer(text) if not re.match(r"^(#|\w+:)", m.group(1))}
    found |= {m.group(1) for m in FILE.finditer(text)}
    found |= {m.group(1) for m in FOLDER.finditer(text)}
    return {path for path in found if path and path not in NOT_OURS}


def exists(root: Path, doc: Path, path: str) -> bool:
    """A path from the repository's root or the document's folder (a glob matching something);
    a bare file name in the root or any of the project's folders."""
    if any(any(base.glob(path)) for base in (root, doc.parent)):
        return True
    return "/" not in path and any(any((root / folder).rglob(path)) for folder in FOLDERS if (root / folder).is_dir())


def missing(root: Path) -> list[str]:
    """'document: path' for each cited path that names nothing."""
    gone = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for path in sorted(cited(doc.read_text(encoding="utf-8"))):
            if not exists(root, doc, path):
                gone.append(f"{doc.relative_to(root).as_posix()}: {path}")
    return gone


def test_readme_and_docs_cite_only_files_the_project_has() -> None:
    assert missing(REPO) == []


def test_a_citation_of_nothing_is_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "bot").mkdir()
    (tmp_path / "bot" / "here.py").write_text("")
    (tmp_path / "docs" / "guide.md").write_text(
        "See [the guide](guide.md#top), `bot/here.py`, `here.py`, `bot/*.py` and `bot/`; also `storage/gone.py`, `gone.py`, "
        "[missing](../notes/plan.md), `tests/test_*.py` and `tests/`. Sites have `robots.txt`; "
        "feeds live at https://example.com/feed.json and /etc/newsbot/feeds.toml.\n"
    )
    (tmp_path / "README.md").write_text("Targets: DESIGN.md, [docs](docs/guide.md), [web](https://x.example/a.md).\n")
    assert missing(tmp_path) == [
        "README.md: DESIGN.md",
        "docs/guide.md: ../notes/plan.md",
        "docs/guide.md: gone.py",
        "docs/guide.md: storage/gone.py",
        "docs/guide.md: tests/",
        "docs/guide.md: tests/test_*.py",
    ]
