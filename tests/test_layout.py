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


def test_the_wheel_ships_only_the_default_its_two_siblings_and_the_paper_head_sets():
    """profiles/ installs into every user's wheel: SmolLM2's default, -metric and -attribution, and the paper's
    imported LLaMA-7B / GPT-J head sets. Earlier variants live in experiments/profiles/ (not packaged)."""
    import json
    import re

    profiles = {p.stem for p in (PACKAGE.parent / "profiles").glob("*.json")
                if "model_name" in json.loads(p.read_text())}  # head profiles, not an index file beside them
    smollm2 = {n for n in profiles if n.startswith("smollm2-")}
    assert smollm2 == {"smollm2-135m-instruct", "smollm2-135m-instruct-metric", "smollm2-135m-instruct-attribution"}
    imported = sorted(n for n in profiles - smollm2 if not re.fullmatch(r"(llama-7b|gpt-j-6b)-pasta-top\d+", n))
    assert not imported, f"{imported}: only the default and the paper's imports ship; move others to experiments/"


def test_no_library_module_imports_experiments_scripts_or_bench():
    offenders = [f"{path.relative_to(PACKAGE.parent)} imports {name}" for path in PACKAGE.rglob("*.py")
                 for name in _imports(path) if name.split(".")[0] in ("experiments", "scripts", "bench")]
    assert not offenders, offenders


def test_every_experiment_says_in_the_readme_what_it_answered():
    experiments = PACKAGE.parent / "experiments"
    readme = (experiments / "README.md").read_text()
    missing = [p.name for p in experiments.glob("*.py") if f"`{p.name}`" not in readme]
    assert not missing, f"add a line for {missing} to experiments/README.md (the question and where the answer is)"
