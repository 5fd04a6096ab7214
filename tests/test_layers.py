"""The layers as DESIGN.md draws them: the engine imports neither Prefect nor the layers above it,
and no two engine modules import each other, even from inside a function."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from import_cycles import cycles  # noqa: E402


def test_no_import_cycle_in_the_engine(tmp_path: Path) -> None:
    assert cycles("loom") == []
    # the checker does see a cycle hidden inside a function
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from pkg import a\n")
    import import_cycles

    root, import_cycles.ROOT = import_cycles.ROOT, tmp_path
    try:
        assert import_cycles.cycles("pkg") == [["pkg.a", "pkg.b"]]
    finally:
        import_cycles.ROOT = root


def test_the_engine_never_imports_the_layers_above_it() -> None:
    above = ("prefect", "flows", "tasks", "blocks", "app")
    for path in (ROOT / "loom").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                assert name.split(".")[0] not in above, f"{path.relative_to(ROOT)} imports {name}"
