"""The package's shape: the CLI is the end of the chain, every sub-package is installed, every module is small
and imports only public names, imports never go round in a circle, and a split module still exports its names."""

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


def test_the_wheel_ships_only_the_defaults_their_siblings_and_the_published_head_sets():
    """profiles/ installs into every user's wheel: SmolLM2's default, -metric and -attribution, Gemma 3 270M's
    default and -quick, the paper's imported LLaMA-7B / GPT-J head sets and the SEKA repository's imported Qwen3 /
    Gemma-3 PASTA head sets (``*-seka-pasta``). Earlier variants live in experiments/profiles/ (not packaged)."""
    import json
    import re

    profiles = {p.stem for p in (PACKAGE.parent / "profiles").glob("*.json")
                if "model_name" in json.loads(p.read_text())}  # head profiles, not an index file beside them
    smollm2 = {n for n in profiles if n.startswith("smollm2-")}
    assert smollm2 == {"smollm2-135m-instruct", "smollm2-135m-instruct-metric", "smollm2-135m-instruct-attribution"}
    gemma = {n for n in profiles if n.startswith("gemma-3-270m")}
    assert gemma == {"gemma-3-270m", "gemma-3-270m-quick"}
    published = r"(llama-7b|gpt-j-6b)-pasta-top\d+|(qwen3-(4b|8b|14b)-base|gemma-3-(4b|12b)-pt)-seka-pasta"
    imported = sorted(n for n in profiles - smollm2 - gemma if not re.fullmatch(published, n))
    assert not imported, f"{imported}: only the default and published imports ship; move others to experiments/"


def test_no_library_module_imports_experiments_scripts_or_bench():
    offenders = [f"{path.relative_to(PACKAGE.parent)} imports {name}" for path in PACKAGE.rglob("*.py")
                 for name in _imports(path) if name.split(".")[0] in ("experiments", "scripts", "bench")]
    assert not offenders, offenders


def test_every_experiment_says_in_the_readme_what_it_answered():
    experiments = PACKAGE.parent / "experiments"
    readme = (experiments / "README.md").read_text()
    missing = [p.name for p in experiments.glob("*.py") if f"`{p.name}`" not in readme]
    assert not missing, f"add a line for {missing} to experiments/README.md (the question and where the answer is)"


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_library_modules_import_no_private_names_and_stay_small():
    """What one module needs of another is public in its owner; each module keeps to one job (under 400 lines)."""
    private, long = [], []
    for path in MODULES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        private += [f"{path.relative_to(PACKAGE.parent)}: {node.module}.{alias.name}" for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pasta_lens")
                    for alias in node.names if alias.name.startswith("_")]
        if len(path.read_text(encoding="utf-8").splitlines()) >= 400:
            long.append(str(path.relative_to(PACKAGE.parent)))
    assert not private, f"private names imported across modules (make them public in their owner): {private}"
    assert not long, f"modules of 400 lines or more (split them by job): {long}"


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycle_between_library_modules():
    """Data flows one way: following the imports made when a module loads (its top-level ``import`` / ``from``
    statements; an import inside a function runs later and is left out) never leads back to the module."""
    names = {_module_name(path): path for path in MODULES}
    graph = {}
    for name, path in names.items():
        targets = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pasta_lens"):
                targets |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("pasta_lens")}
        # importing a.b.c loads the packages a and a.b first (but a package's own modules do not load it again)
        graph[name] = {".".join(t.split(".")[:i]) for t in targets for i in range(1, t.count(".") + 2)} & set(names)
        graph[name] -= {name} | {p for p in graph[name] if name.startswith(p + ".")}

    def cycle_from(start):
        stack, seen = [(start, (start,))], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return trail + (start,)
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + (nxt,)))
        return None

    cycles = [c for c in map(cycle_from, sorted(graph)) if c]
    assert not cycles, f"import cycles (move what both need into a module both import): {cycles[:3]}"


# The names each split module had before it was split, every one still importable from it (a public name moved to
# a new module is re-exported by the old one, so no user's import breaks).
KEPT_NAMES = {
    "pasta_lens.plan": "Head HeadSpec AlphaSpec ScheduleSpec ScalePosition Where DEFAULT_ALPHA ALPHA_MIN "
                       "normalize_heads group_by_layer validate_heads ProfileLike is_profile resolve_heads check_alpha "
                       "check_scale_position head_alphas spec_schedule describe_alpha SteeringPlan plan_from_spec "
                       "resolve_plan",
    "pasta_lens.head_profile": "SCHEMA_VERSION READABLE_SCHEMAS STRATEGIES ScoreTable score_table library_version "
                               "HeadProfile",
    "pasta_lens.spans": "CharSpan SubstringSpec Emphasis parse_markup substring_specs find_substrings "
                        "char_range_specs merge_spans emphasize",
    "pasta_lens.tasks.biographies": "OCCUPATIONS occupation_text with_article Biography first_sentence_end "
                                    "neutralise load_bias_in_bios load_biosbias_pkl split_biographies FIRST_NAMES "
                                    "LAST_NAMES CITIES SCHOOLS HOBBIES RELATIVES TEMPLATES PRONOUNS "
                                    "synthetic_biography SPLIT_SIZES synthetic_biographies",
    "pasta_lens.tasks.implied_bios": "STYLES LENGTHS KINDS TEMPLATES FIRST_NAMES LAST_NAMES SPLIT_OF_INDEX "
                                     "SPLIT_SIZES PRONOUNS split_names split_templates third_singular fill "
                                     "names_own_occupation implied_biography implied_biographies",
    "pasta_lens.tasks.occupation_facts": "OccupationFacts split_items FACTS",
}


def test_split_modules_still_export_their_names():
    import importlib

    missing = {module: [n for n in names.split() if not hasattr(importlib.import_module(module), n)]
               for module, names in KEPT_NAMES.items()}
    assert not any(missing.values()), f"re-export these from their old module: {missing}"


def test_the_learner_modules_import_in_one_direction():
    """config <- strengths <- targets <- losses <- train <- build: no module of pasta_lens.profiling.learned
    imports one that comes after it (so the package has no import cycle)."""
    order = ["config", "strengths", "targets", "losses", "train", "build"]
    for name in order:
        used = set()
        for node in ast.walk(ast.parse((PACKAGE / "profiling" / "learned" / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pasta_lens.profiling.learned"):
                used |= ({node.module.rsplit(".", 1)[-1]} if node.module != "pasta_lens.profiling.learned"
                         else {alias.name for alias in node.names})
        later = used & set(order[order.index(name):])
        assert not later, f"profiling.learned.{name} imports {sorted(later)}, which come after it"


def test_the_public_api_names_import_from_the_top_level():
    import pasta_lens

    names = "load_model emphasize pasta_hooks steer generate profile_heads HeadProfile load_profile evaluate methods"
    missing = [n for n in names.split() if not hasattr(pasta_lens, n) or n not in pasta_lens.__all__]
    assert not missing, f"export these from pasta_lens/__init__.py and list them in __all__: {missing}"
    from pasta_lens.evaluation import evaluate

    assert pasta_lens.evaluate is evaluate  # the harness itself, not a wrapper
