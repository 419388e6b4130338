"""Count failure modes of generated outputs in a `pasta-lens evaluate` run, per method (JSON and pronoun tasks).

    .venv/bin/python experiments/look_outputs.py runs/look-json/examples.jsonl --task json --split validation --n 20

Each count is a plain text rule over the stored output (no model is run), so it reads the same rows as the
table: "opens {" (some '{' in the output), "unclosed" (more '{' than '}': cut by the token budget or looping),
"loop" (one non-empty line, or one sentence, repeated 3+ times), "right occ." (the gold occupation appears
anywhere, case-insensitive), "occ. value right" (the first `"occupation": "..."` string contains it: an
invented occupation when a value is there but wrong), "name kept" (the bio's name appears), "echo" (the
prompt's template or example text reappears), "restates bio" (the output starts with the bio's first sentence).
Prints a Markdown table; `--show UID` prints that example's outputs side by side.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict

from pasta_lens.tasks import get_task

OCC_VALUE = re.compile(r'"occupation"\s*:\s*"([^"]*)"')


def _loops(text: str) -> bool:
    lines = [s.strip() for s in text.splitlines() if len(s.strip()) > 3]
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.strip()) > 10]
    return any(c >= 3 for c in Counter(lines).values()) or any(c >= 3 for c in Counter(sentences).values())


def modes(text: str, ex) -> dict[str, bool]:
    occ = ex.occupation.replace("_", " ").lower()
    value = OCC_VALUE.search(text)
    return {
        "opens {": "{" in text,
        "unclosed": text.count("{") > text.count("}"),
        "loop": _loops(text),
        "right occ.": occ in text.lower(),
        "occ. value right": bool(value) and occ in value.group(1).lower(),
        "occ. value wrong": bool(value) and occ not in value.group(1).lower(),
        "name kept": ex.name in text,
        "echo": '"name": ,' in text or "Here is an example" in text or "aforementioned" in text,
        "restates bio": text.startswith(ex.context[:ex.first_sentence_end]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rows")
    p.add_argument("--task", required=True)
    p.add_argument("--split", default="validation")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--show", default=None, help="an example uid: print its outputs per method")
    args = p.parse_args()
    examples = {ex.uid: ex for ex in get_task(args.task).examples(args.split, args.n)}
    rows = [json.loads(line) for line in open(args.rows, encoding="utf-8")]
    rows = [r for r in rows if r["uid"] in examples and r["task"] == args.task]
    if args.show:
        for r in rows:
            if r["uid"] == args.show:
                print(f"--- {r['method']} {r['metrics']}\n{r['outputs']['output']}\n")
        return
    counts: dict[str, Counter] = defaultdict(Counter)
    n: Counter = Counter()
    for r in rows:
        n[r["method"]] += 1
        for key, hit in modes(r["outputs"]["output"], examples[r["uid"]]).items():
            counts[r["method"]][key] += int(hit)
    keys = list(modes("", next(iter(examples.values()))))
    print("| method | n | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for method in n:
        print(f"| {method} | {n[method]} | " + " | ".join(str(counts[method][k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
