"""tests/README.md maps every behaviour README.md states to tests: each test it names
(``file::function``, relative to tests/) must exist, and each README section has its rows,
so renaming a test or adding a section without updating the map fails here."""

from __future__ import annotations

import ast
import re

from tests.helpers import ROOT

TESTS = ROOT / "tests"
MAP = TESTS / "README.md"
REFERENCE = re.compile(r"`([\w/]+\.py)::(\w+)`")


def defined_tests(path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")}


def test_every_test_the_map_names_exists():
    references = REFERENCE.findall(MAP.read_text())
    assert len(references) >= 100
    missing = [f"{file}::{name}" for file, name in references
               if not (TESTS / file).is_file() or name not in defined_tests(TESTS / file)]
    assert missing == [], "tests/README.md names tests that do not exist"


def test_the_map_has_a_part_for_each_readme_section_in_order():
    sections = ["(intro)", *re.findall(r"^## (.+)$", (ROOT / "README.md").read_text(), re.M)]
    parts = re.findall(r"^\| \*\*(.+?)\*\* \| \|$", MAP.read_text(), re.M)
    assert parts == sections
