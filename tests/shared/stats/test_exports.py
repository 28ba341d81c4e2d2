"""shared.stats names each export three times (lazy table, __all__, typing imports): they agree."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import shared.stats as stats


def _type_checking_imports() -> dict[str, str]:
    tree = ast.parse(Path(stats.__file__).read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    return {
        alias.name: str(node.module)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def test_the_lazy_table_all_and_the_typing_imports_name_the_same_exports() -> None:
    assert sorted(stats._EXPORTS) == sorted(stats.__all__)
    assert _type_checking_imports() == stats._EXPORTS


def test_every_export_resolves_to_its_modules_object() -> None:
    for name, module in stats._EXPORTS.items():
        source = importlib.import_module(f"shared.stats.{module}")
        assert getattr(stats, name) is getattr(source, name)
