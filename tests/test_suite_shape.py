"""The suite reads like a suite, not a web: no test module imports another (or a conftest), what tests share lives in
tests/support, and every fixture name is defined once (shared ones in tests/conftest.py)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.support.environment import TESTS


def modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(TESTS.parent)): ast.parse(p.read_text()) for p in sorted(TESTS.rglob("*.py"))}


def is_test_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def test_no_module_of_the_suite_imports_a_test_module_or_a_conftest() -> None:
    imports = []
    for path, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tests"):
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name.startswith("tests")]
            else:
                continue
            imports += [f"{path}:{node.lineno} imports {name}" for name in names if is_test_module(name)]
    assert imports == []


def test_every_fixture_is_defined_once() -> None:
    defined: dict[str, list[str]] = defaultdict(list)
    for path, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                "fixture" in ast.unparse(decorator) for decorator in node.decorator_list
            ):
                defined[node.name].append(f"{path}:{node.lineno}")
    assert {name: where for name, where in defined.items() if len(where) > 1} == {}


def test_shared_helpers_live_in_tests_support() -> None:
    loose = [p.name for p in TESTS.glob("*.py") if not is_test_module(p.stem) and p.name != "__init__.py"]
    assert loose == ["clone_check.py"]  # the `make test-clone` script, run by make (not a helper)
    assert (TESTS / "support" / "__init__.py").exists()
    assert not list(Path(TESTS / "browser").glob("conftest.py"))
