"""The house rules a newcomer relies on: a test file per module, modules and functions small
enough to read in one sitting."""
import ast

import pytest

from tests.support import ROOT

MODULES = sorted(p for p in (ROOT / "proxy").rglob("*.py") if p.name not in ("__init__.py", "__main__.py"))
MAX_MODULE_LINES = 420
MAX_FUNCTION_LINES = 60


def _test_file(module):
    parts = module.relative_to(ROOT / "proxy").with_suffix("").parts
    return ROOT / "tests" / f"test_{'_'.join(parts)}.py"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_has_its_test_file(module):
    assert _test_file(module).exists(), f"{module.relative_to(ROOT)} has no {_test_file(module).relative_to(ROOT)}"


@pytest.mark.parametrize("module", MODULES + sorted((ROOT / "balancers").glob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_readable(module):
    text = module.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{module.name}: split it by responsibility"
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(text))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{module.name}: {', '.join(long)}"


@pytest.mark.parametrize("module", [m for m in MODULES if m.parent.name == "proxy"], ids=lambda p: p.name)
def test_every_service_module_is_in_the_readmes_module_table(module):
    readme = (ROOT / "README.md").read_text()
    assert f"| `proxy/{module.name}` |" in readme, f"add proxy/{module.name} to README.md's module table"
