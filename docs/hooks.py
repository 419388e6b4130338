"""MkDocs hook: publish the repository's results/ reports and experiments/README.md on the docs site.

The reports live outside ``docs/`` (they are the repository's record, next to their run folders), and the docs
pages link to them as ``../results/NAME.md`` so that the links also work when the repository is browsed. This hook
adds ``results/*.md`` (all but ``results/README.md``, whose place on the site ``docs/results.md`` takes),
``results/*.png`` and ``experiments/README.md`` to the site under the same paths (``results/...``,
``experiments/...``), and rewrites a docs page's ``../results/`` / ``../experiments/`` links to those copies, so
``mkdocs build --strict`` checks them like any other link.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ("results/*.md", "results/*.png", "experiments/README.md")
_OUTSIDE = re.compile(r"\]\(((?:\.\./)+)(results|experiments)/")


def on_files(files: Files, config) -> Files:
    for pattern in PUBLISHED:
        for path in sorted(ROOT.glob(pattern)):
            if path == ROOT / "results" / "README.md":  # its site URL would be results/, docs/results.md's own
                continue
            files.append(File(path.relative_to(ROOT).as_posix(), src_dir=str(ROOT), dest_dir=config["site_dir"],
                              use_directory_urls=config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri.startswith(("results/", "experiments/")):
        return markdown
    depth = page.file.src_uri.count("/")  # a page in docs/ links out with depth + 1 "../"

    def inside(match: re.Match) -> str:
        ups = len(match.group(1)) // 3
        return f"]({'../' * (ups - 1)}{match.group(2)}/" if ups == depth + 1 else match.group(0)

    return _OUTSIDE.sub(inside, markdown)
