"""Rooms of a readable size: no module of bot/ or storage/ over MAX_LINES lines unless its
docstring says why it is one module (a paragraph starting "Why one module:")."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

MAX_LINES = 500
REASON = "Why one module:"


def oversized(root: Path, folders: tuple[str, ...] = ("bot", "storage")) -> dict[str, int]:
    """Modules over MAX_LINES lines whose docstring does not say why: path → lines."""
    found = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            lines = text.count("\n")
            if lines > MAX_LINES and REASON not in (ast.get_docstring(ast.parse(text)) or ""):
                found[path.relative_to(root).as_posix()] = lines
    return found


def test_no_module_is_long_without_saying_why() -> None:
    found = oversized(REPO)
    assert found == {}, f"split these, or say at their top why not ({REASON!r}): {found}"


def test_the_size_rule_sees_a_long_module_and_reads_its_reason(tmp_path: Path) -> None:
    (tmp_path / "bot").mkdir()
    body = "\n".join(f"x{i} = {i}" for i in range(MAX_LINES + 5)) + "\n"
    (tmp_path / "bot" / "long.py").write_text(body)
    (tmp_path / "bot" / "said.py").write_text(f'"""Long.\n\n{REASON} one table."""\n' + body)
    (tmp_path / "bot" / "short.py").write_text("x = 1\n")
    assert oversized(tmp_path, ("bot",)) == {"bot/long.py": MAX_LINES + 5}
