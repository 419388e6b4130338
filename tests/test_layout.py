"""The package's shape: the CLI is the end of the chain, and every sub-package is installed."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pasta_lens"
PYPROJECT = PACKAGE.parent / "pyproject.toml"


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_no_library_module_imports_the_cli():
    offenders = [f"{path.relative_to(PACKAGE.parent)} imports {name}"
                 for path in PACKAGE.rglob("*.py") if PACKAGE / "cli" not in path.parents
                 for name in _imports(path) if name == "pasta_lens.cli" or name.startswith("pasta_lens.cli.")]
    assert not offenders, offenders


def test_every_sub_package_is_in_the_explicit_package_list():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser as tomli, which pytest itself needs there
        import tomli as tomllib

    listed = set(tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(PACKAGE.parent).parts) for init in PACKAGE.rglob("__init__.py")}
    assert found - listed == set(), f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
