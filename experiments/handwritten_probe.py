"""Steering on text nothing was tuned on: hand-written bios, context questions and ordinary prompts, read by eye.

Question it answers: does a steering configuration still work (and keep the document's content) on text that no
profile, selection or learning saw? The probes (``experiments/handwritten/probes.json``) were written by hand for
this check and are never used to tune anything:

* 30 bios that imply an occupation without naming it, under the paper's JSON instruction (is there a JSON object,
  does it hold the right occupation, does the answer name it anywhere) and its pronoun instruction (a "they" form,
  no gendered pronoun left, the bio's content words kept);
* 20 short documents with a question answered in them and an emphasised format instruction (is the answer right,
  is the format followed, scored separately);
* 12 ordinary prompts typed as a user would, printed for reading.

Every configuration is generated beside the unsteered model on exactly the same tokens (greedy), and the outputs
are written next to each other, so the numbers can be checked by reading.

Usage::

    python experiments/handwritten_probe.py --out runs/handwritten                      # the default profile
    python experiments/handwritten_probe.py --steer profile=smollm2-135m-instruct-metric --out runs/hw-metric
    python experiments/handwritten_probe.py --steer profile=PATH,alpha=0.1,schedule=all --out runs/hw-x
    python experiments/handwritten_probe.py --steer method=instaboost,factor=5 --out runs/hw-ib

The checks here are written independently of pasta_lens.metrics on purpose (an outside check of the package).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
JSON_INSTRUCTION = ('Answer the occupation of {name} and generate the answer as json format. Here is an example: '
                    '{{"name": , "occupation": ,}}. Now generate the answer.')
PRONOUN_INSTRUCTION = ("For the aforementioned text, substitute 'she' and 'he' with 'they' and generate the "
                       "occupation of {name} after changing pronouns.")
GENDERED = {"she", "he", "her", "hers", "him", "his", "herself", "himself"}
THEY = {"they", "them", "their", "theirs", "themselves", "themself"}
STOP = {"the", "a", "an", "and", "of", "in", "on", "at", "to", "for", "with", "by", "from", "as", "is", "are", "was",
        "were", "be", "her", "his", "she", "he", "they", "their", "them", "who", "that", "this", "it", "its", "every",
        "each", "after", "before", "into", "about", "than", "two", "three", "last", "year", "has", "have", "had"}


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def first_object(text: str) -> Any:
    """The JSON object the answer's first ``{`` opens, parsed whole, or None (strict: no repair)."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and value else None


def names(text: str, accept: list[str]) -> bool:
    low = " " + " ".join(words(text)) + " "
    return any(f" {' '.join(words(a))} " in low for a in accept)


def bio_json_scores(bio: dict, out: str) -> dict:
    obj = first_object(out)
    values = " ".join(str(v) for v in obj.values()) if obj else ""
    return {"json": obj is not None, "occupation_in_object": bool(obj) and names(values, bio["accept"]),
            "occupation_named": names(out, bio["accept"])}


def bio_pronoun_scores(bio: dict, out: str) -> dict:
    ws = words(out)
    content = [w for w in words(bio["text"]) if w not in STOP and len(w) > 2]
    kept = sum(w in set(ws) for w in set(content)) / max(1, len(set(content)))
    return {"they": any(w in THEY for w in ws), "no_gendered": not any(w in GENDERED for w in ws),
            "content_kept": kept, "rewrite": kept >= 0.5 and any(w in THEY for w in ws)
            and not any(w in GENDERED for w in ws)}


def qa_scores(case: dict, out: str) -> dict:
    norm = " ".join(words(out))
    correct = any(" ".join(words(g)) in norm for g in case["gold"])
    kind = case["format"]
    text = out.strip()
    if kind == "upper":
        letters = [c for c in text if c.isalpha()]
        fmt = bool(letters) and all(c.isupper() for c in letters)
    elif kind == "short":
        fmt = 0 < len(words(text)) <= 2
    elif kind == "json":
        obj = first_object(text)
        fmt = bool(obj) and "answer" in obj
    elif kind == "nocomma":
        fmt = bool(text) and "," not in text
    elif kind.startswith("prefix:"):
        fmt = text.startswith(kind.split(":", 1)[1])
    else:
        raise ValueError(kind)
    return {"correct": correct, "format": fmt}


def parse_steer(spec: str) -> dict:
    out = {}
    for item in spec.split(","):
        key, _, value = item.partition("=")
        out[key.strip()] = value.strip()
    return out


def generate_all(model: Any, texts: list[str], steer: dict, max_new_tokens: int, batch: int) -> list[str]:
    from pasta_lens import generate, load_profile

    kwargs: dict = {"chat": True, "max_new_tokens": max_new_tokens}
    if not steer:
        kwargs["steered"] = False
    else:
        if "profile" in steer:
            kwargs["heads"] = load_profile(steer["profile"])
        if "method" in steer:
            kwargs["method"] = steer["method"]
            kwargs.update({k: float(v) for k, v in steer.items() if k not in ("method", "profile", "schedule")})
        elif "alpha" in steer:
            kwargs["alpha"] = float(steer["alpha"])
        if "schedule" in steer:
            kwargs["schedule"] = steer["schedule"]
    outs: list[str] = []
    for i in range(0, len(texts), batch):
        outs += generate(model, texts[i:i + batch], **kwargs)
    return outs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--steer", default="profile=default",
                   help="profile=NAME|PATH|default[,alpha=A][,schedule=S] or method=NAME[,param=value...]")
    p.add_argument("--out", required=True, help="folder for outputs.jsonl and report.md")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--kinds", default="bio_json,bio_pronoun,context_qa,ordinary",
                   help="which probes to run (comma list; default all four)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pasta_lens import load_model
    from pasta_lens.registry import default_profile

    probes = json.loads((HERE / "handwritten" / "probes.json").read_text())
    model = load_model(args.model)
    steer = parse_steer(args.steer)
    if steer.get("profile") == "default":
        del steer["profile"]  # generate() steers the model's default profile when no heads are given
    label = args.steer
    prompts = {
        "bio_json": [f"{b['text']} *{JSON_INSTRUCTION.format(name=b['name'])}*" for b in probes["bios"]],
        "bio_pronoun": [f"{b['text']} *{PRONOUN_INSTRUCTION.format(name=b['name'])}*" for b in probes["bios"]],
        "context_qa": [f"{c['document']} {c['question']} *{c['instruction']}*" for c in probes["context_qa"]],
        "ordinary": [o["prompt"] for o in probes["ordinary"]],
    }
    lengths = {"bio_json": 48, "bio_pronoun": 96, "context_qa": 32, "ordinary": 64}
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if set(kinds) - set(prompts):
        raise SystemExit(f"--kinds takes {', '.join(prompts)}; got {args.kinds!r}")
    prompts = {k: v for k, v in prompts.items() if k in kinds}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    rows = []
    totals: dict = {}
    steer_args = steer
    for kind, texts in prompts.items():
        plain = generate_all(model, texts, {}, lengths[kind], args.batch)
        steered = (generate_all(model, texts, steer_args, lengths[kind], args.batch) if steer_args
                   else _default(model, texts, lengths[kind], args.batch))
        for i, (text, a, b) in enumerate(zip(texts, plain, steered)):
            if kind == "bio_json":
                sa, sb = bio_json_scores(probes["bios"][i], a), bio_json_scores(probes["bios"][i], b)
            elif kind == "bio_pronoun":
                sa, sb = bio_pronoun_scores(probes["bios"][i], a), bio_pronoun_scores(probes["bios"][i], b)
            elif kind == "context_qa":
                sa, sb = qa_scores(probes["context_qa"][i], a), qa_scores(probes["context_qa"][i], b)
            else:
                sa, sb = {}, {}
            rows.append({"kind": kind, "i": i, "prompt": text, "unsteered": a, "steered": b,
                         "scores_unsteered": sa, "scores_steered": sb})
            for name, value in sa.items():
                totals.setdefault((kind, name), [0.0, 0.0, 0])
                totals[(kind, name)][0] += float(value)
                totals[(kind, name)][1] += float(sb[name])
                totals[(kind, name)][2] += 1
    spec = default_profile(model)[1] if not steer_args else label
    lines = [f"# Hand-written probes: {label}", "", f"Model `{args.model}`; steered: {spec}.",
             f"Command: `python experiments/handwritten_probe.py {' '.join(argv or sys.argv[1:])}`; "
             f"{time.time() - start:.0f} s.", "", "| probe | score | unsteered | steered |", "|---|---|---|---|"]
    for (kind, name), (a, b, n) in totals.items():
        lines.append(f"| {kind} | {name} | {a / n:.2f} | {b / n:.2f} |")
    lines += ["", "## Outputs", ""]
    for r in rows:
        lines += [f"**{r['kind']} {r['i']}**: {r['prompt']}", "",
                  f"- unsteered: {json.dumps(r['unsteered'])} {r['scores_unsteered'] or ''}",
                  f"- steered: {json.dumps(r['steered'])} {r['scores_steered'] or ''}", ""]
    (out_dir / "outputs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:len(totals) + 6]))
    return 0


def _default(model: Any, texts: list[str], max_new_tokens: int, batch: int) -> list[str]:
    from pasta_lens import generate

    outs: list[str] = []
    for i in range(0, len(texts), batch):
        outs += generate(model, texts[i:i + batch], chat=True, max_new_tokens=max_new_tokens)
    return outs


if __name__ == "__main__":
    raise SystemExit(main())
