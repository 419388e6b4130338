"""Convert the PASTA paper's published multi-task head sets into pasta_lens registry profiles.

    python scripts/import_pasta_head_configs.py DATA_DIR

DATA_DIR is a clone of QingruZhang/PASTA (@ 56a9138d2d07; the files are read from
config/head_config/{llama-7b,gptj}/multi_task/intersection/) or a folder holding unchanged copies of them as
pasta_head_configs/{llama-7b,gptj}/top{K}_json-bio-cf-pron_train1000.json. Each becomes
profiles/{llama-7b,gpt-j-6b}-pasta-top{K}.json with the source repository, commit, path and license.
"""

import re
import sys
from pathlib import Path

from pasta_lens import HeadProfile

REPO = Path(__file__).resolve().parents[1]
SOURCE = {"repository": "https://github.com/QingruZhang/PASTA", "commit": "56a9138d2d07", "license": "MIT",
          "copyright": "Copyright (c) 2023 Qingru Zhang",
          "paper": "Zhang et al., Tell Your Model Where to Attend: Post-hoc Attention Steering for LLMs, ICLR 2024"}
MODELS = {  # folder -> (registry prefix, model name, layers, heads)
    "llama-7b": ("llama-7b", "huggyllama/llama-7b", 32, 32),
    "gptj": ("gpt-j-6b", "EleutherAI/gpt-j-6b", 28, 16),
}
TASKS = ("json", "biasbios", "counterfact", "pronoun")


def main(data_dir: Path) -> None:
    out_dir = REPO / "profiles"
    for folder, (prefix, model_name, n_layers, n_heads) in MODELS.items():
        clone = data_dir / "config" / "head_config" / folder / "multi_task" / "intersection"
        source = clone if clone.is_dir() else data_dir / "pasta_head_configs" / folder
        paths = sorted(source.glob("top*_json-bio-cf-pron_train1000.json"))
        if not paths:
            raise SystemExit(f"No top*_json-bio-cf-pron_train1000.json under {source}: pass a clone of "
                             "QingruZhang/PASTA or a folder with pasta_head_configs/{llama-7b,gptj}/.")
        for path in paths:
            k = int(re.match(r"top(\d+)_", path.name).group(1))
            provenance = dict(SOURCE, path=f"config/head_config/{folder}/multi_task/intersection/{path.name}",
                              note="intersection of the per-task top-k heads over JSON formatting, pronoun "
                                   "changing, BiasBios and CounterFact, profiled by the PASTA authors on 1,000 "
                                   "training examples per task (their profiler is unreleased; heads only, no scores)")
            profile = HeadProfile.from_pasta_json(
                path, model_name=model_name, n_layers=n_layers, n_heads=n_heads, k=k, tasks=TASKS,
                strategy="intersection", provenance=provenance, n_examples={t: 1000 for t in TASKS})
            profile = HeadProfile.from_dict(dict(profile.to_dict(),
                                                 command="python scripts/import_pasta_head_configs.py"))
            target = out_dir / f"{prefix}-pasta-top{k}.json"
            profile.save(target)
            print(f"{target.relative_to(REPO)}: {len(profile.heads)} heads")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
