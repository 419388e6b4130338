"""Convert the PASTA head configs shipped in the SEKA repository (Qwen3-4B/8B/14B-Base, Gemma-3-4B/12B-pt) into
pasta_lens registry profiles.

    python scripts/import_seka_pasta_head_configs.py DATA_DIR

DATA_DIR is a clone of waylonli/SEKA (the files are read from pastalib/config/{name}.json) or a folder holding
unchanged copies of them at the same relative path. Each becomes profiles/{prefix}-seka-pasta.json, recording the
source repository, the commit each file was read at, its path, and the licence status (the repository states none:
see profiles/NOTICE-SEKA.md).

The configs are PASTA's {"layer": [head, ...]} format: the head sets the SEKA authors steered with PASTA, their
baseline, on these models (500 heads each; every one of Gemma-3-4B-pt's 272 heads). How they were selected is not
documented beside them; the repository carries a synthetic-QA PASTA profiler
(pastalib/profiler/synthetic_qa_pasta_profile_builder.py). They hold heads only: no scores, no weights identity, so a
profile checks only the shape of the model it is used on.
"""

import sys
from pathlib import Path

from pasta_lens.head_profile import HeadProfile

REPO = Path(__file__).resolve().parents[1]
SOURCE = {"repository": "https://github.com/waylonli/SEKA",
          "license": "none stated (no LICENSE file, no licence section in the README); see profiles/NOTICE-SEKA.md",
          "paper": "Li et al., Spectral Attention Steering for Prompt Highlighting, ICLR 2026",
          "note": "the PASTA head sets of the SEKA repository's PASTA baseline (pastalib/config/); selection method "
                  "not documented beside them; heads only, no scores"}
MODELS = {  # file stem -> (registry prefix, model name, layers, query heads, commit the file was read at)
    "Qwen3-4B-Base": ("qwen3-4b-base", "Qwen/Qwen3-4B-Base", 36, 32, "5b0a70171246e7bebfba2588a9f228ce70def9e8"),
    "Qwen3-8B-Base": ("qwen3-8b-base", "Qwen/Qwen3-8B-Base", 36, 32, "2a3bf5a8243c3e468dcd844effe142c135c05fb3"),
    "Qwen3-14B-Base": ("qwen3-14b-base", "Qwen/Qwen3-14B-Base", 40, 40, "2a3bf5a8243c3e468dcd844effe142c135c05fb3"),
    "gemma-3-4b-pt": ("gemma-3-4b-pt", "google/gemma-3-4b-pt", 34, 8, "daa3ec5d78db100bfc068b84735fa50aa7f3d8ea"),
    "gemma-3-12b-pt": ("gemma-3-12b-pt", "google/gemma-3-12b-pt", 48, 16, "daa3ec5d78db100bfc068b84735fa50aa7f3d8ea"),
}


def main(data_dir: Path) -> None:
    out_dir = REPO / "profiles"
    for stem, (prefix, model_name, n_layers, n_heads, commit) in MODELS.items():
        path = data_dir / "pastalib" / "config" / f"{stem}.json"
        if not path.is_file():
            raise SystemExit(f"No {path}: pass a clone of waylonli/SEKA (or a folder with "
                             f"pastalib/config/{stem}.json).")
        provenance = dict(SOURCE, path=f"pastalib/config/{stem}.json", commit=commit)
        profile = HeadProfile.from_pasta_json(path, model_name=model_name, n_layers=n_layers, n_heads=n_heads,
                                              provenance=provenance)
        profile = HeadProfile.from_dict(dict(profile.to_dict(), method="seka-pasta-config",
                                             command="python scripts/import_seka_pasta_head_configs.py"))
        target = out_dir / f"{prefix}-seka-pasta.json"
        profile.save(target)
        print(f"{target.relative_to(REPO)}: {len(profile.heads)} heads")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
