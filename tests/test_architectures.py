"""The architecture table, asserted cell by cell, and the documentation page that shows it.

Each family of :mod:`tests.families` (twelve: the ten the project claims plus GPT-J and GPT-Neo, which the bridge
cannot steer) runs every check of :mod:`tests.architectures` on each backend of the running world. A cell must
``pass``, except where this file expects a refusal, with its reason; a ``fail`` is never expected. Generation on
sliding-window families may pass or refuse with an error that names the window (the two outcomes a correct engine may give); any
other error, or other tokens than the uncached reference, fails. ``docs/architectures.md`` must show exactly the
cells the checks give (``scripts/architectures_table.py`` writes it).

Cells that give a wrong result today are listed in :func:`known_wrong` and run as strict ``xfail``: they stay in
the table as **FAIL**, and the test fails once they pass, so that the list is shortened with the fix.
"""

import pytest

from tests.architectures import CHECKS, family_outcome, section_key, table
from tests.families import FAMILIES

DISCARDED = ("gptj", "gptneo")
"""Families whose bridge discards hook_pattern edits: refused on the bridge in every column."""
RENAMED = ("gpt2", "neox", "phi3")
"""Families whose bridge renames the HF modules: no fast engine (the hooks run)."""
SLIDING = tuple(name for name, fam in FAMILIES.items() if fam.sliding)
GENERATION = ("generate", "fast engine", "auto")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run faster on one thread, and much faster than on two when other processes hold the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


KNOWN_WRONG: dict[tuple[str, str, str], str] = {}
"""``{(family, backend, check): why}`` for cells that give a wrong result today; empty since the steering hooks and
the fast engine place a KV cache's keys at their absolute positions (sliding-window generation past the window,
once listed here for Mistral, Gemma 2 and Gemma 3 on the bridge, now passes)."""


def known_wrong(family: str, backend: str, check: str) -> str:
    """Why the cell gives a wrong result today ("" when it should not): :data:`KNOWN_WRONG`."""
    return KNOWN_WRONG.get((family, backend, check), "")


def expected(family: str, backend: str, check: str) -> dict[str, str]:
    """``{status: phrase the detail must contain}`` for the outcomes a cell may have."""
    if backend == "bridge" and family in DISCARDED:
        return {"refused": "discarded"}
    if backend == "hooked":
        return {"fast engine": {"refused": "not a TransformerBridge"},
                "auto": {"pass": "hooks (not a TransformerBridge)"}}.get(check, {"pass": ""})
    if check in GENERATION and family in SLIDING:
        return {"pass": "", "refused": "window"}
    if family in RENAMED and check in ("fast engine", "auto"):
        return {"refused": "not used (the bridge renames"} if check == "fast engine" else {
            "pass": "hooks (the bridge renames"}
    if check == "auto":
        return {"pass": "fast engine"}
    return {"pass": ""}


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_cell(family, check, backend, request):
    why = known_wrong(family, backend, check)
    if why:
        request.applymarker(pytest.mark.xfail(strict=True, reason=why))
    outcome = family_outcome(family, backend, check)
    allowed = expected(family, backend, check)
    assert outcome.status in allowed, f"{FAMILIES[family].label} ({backend}) {check}: {outcome.cell()}"
    assert allowed[outcome.status] in outcome.detail, f"{FAMILIES[family].label} ({backend}) {check}: {outcome.cell()}"


def _script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "architectures_table.py"
    spec = importlib.util.spec_from_file_location("architectures_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_writing_one_table_leaves_the_others_as_they_are():
    script = _script()
    page = ("intro\n<!-- table a -->\n\n<!-- end table -->\n## B\n<!-- table b -->\nold b\n<!-- end table -->\n"
            "<!-- table c -->\n\n<!-- end table -->\nend\n")
    written = script.write_section(page, "a", "| new a |")
    assert script.read_section(written, "a") == "| new a |"
    assert script.read_section(written, "b") == "old b" and "## B" in written
    assert written.replace("| new a |", "") == page  # nothing else of the page changed
    again = script.write_section(written, "c", "| new c |")
    assert [script.read_section(again, k) for k in "abc"] == ["| new a |", "old b", "| new c |"]
    with pytest.raises(ValueError, match="no '<!-- table d -->'"):
        script.read_section(page, "d")
    # A section without its empty line is not found, never matched across the next table's markers.
    squeezed = "<!-- table a -->\n<!-- end table -->\n<!-- table b -->\nold b\n<!-- end table -->\n"
    with pytest.raises(ValueError, match="no '<!-- table a -->'"):
        script.write_section(squeezed, "a", "| new a |")


def test_the_page_shows_what_the_checks_give(backend):
    script = _script()
    assert script.read_section(script.PAGE.read_text(), section_key(backend)) == table(backend), (
        f"docs/architectures.md is stale for {section_key(backend)}: run scripts/architectures_table.py")
    if section_key(backend) == script.README_KEY:  # the README shows the default world's bridge table too
        assert script.read_section(script.README.read_text(), script.README_KEY) == table(backend), (
            "README.md's architecture table is stale: run scripts/architectures_table.py")
