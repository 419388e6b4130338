"""Write the architecture table of the running world into docs/architectures.md (or check that it is there).

    .venv/bin/python scripts/architectures_table.py            # TransformerLens 4.x: the bridge's table
    .venv-tl3/bin/python scripts/architectures_table.py        # TransformerLens 3.9: bridge and HookedTransformer
    .venv/bin/python scripts/architectures_table.py --check    # exit 1 if the page differs from the checks

Every cell comes from running the checks of ``tests/architectures.py`` on the tiny family models of
``tests/families.py`` (about a minute per backend on 2 cores); each world replaces only its own tables, between
``<!-- table KEY -->`` and ``<!-- end table -->`` (KEY: ``tl4-bridge``, ``tl3-bridge``, ``tl3-hooked``).
``tests/test_architectures.py`` checks the same cells and that the page shows them.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "architectures.md"
README = REPO / "README.md"
README_KEY = "tl4-bridge"
"""The one table the README also shows (the default world and backend), between the same markers."""


def section_pattern(key: str) -> "re.Pattern[str]":
    # The body never crosses another table's marker; an empty body is written as one empty line.
    return re.compile(rf"(<!-- table {re.escape(key)} -->\n)((?:(?!<!-- table ).)*?)(\n<!-- end table -->)", re.S)


def read_section(page: str, key: str) -> str:
    """The table between the markers of ``key`` in ``page``.

    Raises:
        ValueError: the page has no such section.
    """
    found = section_pattern(key).search(page)
    if found is None:
        raise ValueError(f"docs/architectures.md has no '<!-- table {key} -->' ... '<!-- end table -->' section.")
    return found.group(2)


def write_section(page: str, key: str, text: str) -> str:
    read_section(page, key)
    return section_pattern(key).sub(lambda m: m.group(1) + text + m.group(3), page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import torch

    torch.set_num_threads(1)
    from pasta_lens.backends import available_backends
    from pasta_lens.io import atomic_write_text
    from tests.architectures import section_key, table

    page = PAGE.read_text()
    stale = []
    for backend in available_backends():
        key, text = section_key(backend), table(backend)
        if read_section(page, key) != text:
            stale.append(key)
        page = write_section(page, key, text)
        print(f"<!-- table {key} -->\n{text}\n")
    if args.check:
        print("stale: " + ", ".join(stale) if stale else "docs/architectures.md is current")
        return 1 if stale else 0
    atomic_write_text(PAGE, page)
    if README_KEY in {section_key(b) for b in available_backends()}:
        atomic_write_text(README, write_section(README.read_text(), README_KEY, read_section(page, README_KEY)))
    print(f"wrote {', '.join(section_key(b) for b in available_backends())} into {PAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
