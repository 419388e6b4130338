"""Real BiasBios biographies: the two public formats read, pronouns neutralised, a loaded list split.

The PASTA paper builds three of its four tasks on BiasBios (De-Arteaga et al., 2019): short web biographies
labelled with one of 28 occupations and a binary gender. Two public formats are read here:

* Hugging Face ``LabHC/bias_in_bios`` rows ``{"hard_text": str, "profession": int, "gender": int}``: the bio
  *without* its first sentence (which names the occupation) and without a name; ``profession`` indexes
  :data:`~pasta_lens.tasks.bio_example.OCCUPATIONS` (alphabetical, as on the dataset card); ``gender`` 0 = male,
  1 = female.
* ``BIOS.pkl`` built by the scraper of ``microsoft/biosbias``: a list of dicts with ``name`` (a tuple
  ``(first, middle, last)``), ``raw`` (the full bio, first sentence included), ``bio`` (the bio from
  ``start_pos`` on), ``title`` (the occupation, e.g. ``"software_engineer"``), ``gender`` (``"F"``/``"M"``) and
  ``start_pos`` (where the first sentence ends in ``raw``).

Real bios carry no gender-neutral form, so :func:`neutralise` makes one word by word (the pronoun task's gold
answer); :func:`split_biographies` partitions a loaded list 80/10/10 into train/validation/test.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Iterable, Sequence

from pasta_lens.tasks.base import check_split, seeded_sample
from pasta_lens.tasks.bio_example import OCCUPATIONS, Biography


def first_sentence_end(text: str) -> int:
    """End of the first sentence: after the first ``.``, ``!`` or ``?`` followed by a space (or the text end)."""
    m = re.search(r"[.!?](?=\s|$)", text)
    return m.end() if m else len(text)


_NEUTRAL = {
    "she": "they",
    "he": "they",
    "her": "their",
    "him": "them",
    "his": "their",
    "hers": "theirs",
    "herself": "themselves",
    "himself": "themselves",
}


_AGREE = {"is": "are", "was": "were", "has": "have", "does": "do"}


def neutralise(text: str) -> str:
    """Replace gendered pronouns by "they"-forms word by word.

    Only the auxiliaries right after "they" are made plural (is/was/has/does); other verbs keep their form, and
    object "her" becomes "their" (it cannot be told from possessive "her" without a parser). Exact neutral forms
    exist only for synthetic bios, whose templates carry both.

    Example:
        >>> neutralise("She said his book is hers. He has one.")
        'They said their book is theirs. They have one.'
    """

    def swap(m: re.Match) -> str:
        word = m.group(0)
        new = _NEUTRAL[word.lower()]
        return new.capitalize() if word[0].isupper() else new

    text = re.sub(r"\b(" + "|".join(_NEUTRAL) + r")\b", swap, text, flags=re.IGNORECASE)
    return re.sub(r"\b([Tt]hey) (is|was|has|does)\b", lambda m: f"{m.group(1)} {_AGREE[m.group(2)]}", text)


def _rows(source: str | os.PathLike | Iterable[dict]) -> Iterable[dict]:
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"No such file: {path}. Pass a JSON/JSONL export of the dataset or the rows.")
        with open(path, encoding="utf-8") as f:
            if path.endswith(".jsonl"):
                return [json.loads(line) for line in f if line.strip()]
            return json.load(f)
    return source


def load_bias_in_bios(source: str | os.PathLike | Iterable[dict], split_name: str = "") -> list[Biography]:
    """Biographies from ``LabHC/bias_in_bios`` rows (``hard_text``, ``profession``, ``gender``).

    Args:
        source: the rows (e.g. ``datasets.load_dataset("LabHC/bias_in_bios", split="test")``) or a path to a
            JSON list / JSONL file of them.
        split_name: put in the uids (``"bias_in_bios:test:17"``).

    The rows have no name and no occupation-revealing first sentence: ``person`` is "this person", and the
    emphasised "first sentence" is the first sentence of ``hard_text``.

    Example:
        >>> bios = load_bias_in_bios([{"hard_text": "She treats patients.", "profession": 13, "gender": 1}])
        >>> bios[0].occupation, bios[0].gender
        ('nurse', 'F')
    """
    out = []
    for i, row in enumerate(_rows(source)):
        try:
            text, prof, gender = str(row["hard_text"]).strip(), int(row["profession"]), int(row["gender"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"Row {i} is not a LabHC/bias_in_bios row with hard_text, profession, gender: {str(row)[:200]}"
            ) from None
        if not 0 <= prof < len(OCCUPATIONS) or gender not in (0, 1):
            raise ValueError(
                f"Row {i}: profession must be 0..27 and gender 0 (male) or 1 (female); got {prof}, {gender}."
            )
        out.append(
            Biography(
                uid=f"bias_in_bios:{split_name}:{i}",
                source="bias_in_bios",
                name="",
                occupation=OCCUPATIONS[prof],
                gender="MF"[gender],
                context=text,
                first_sentence_end=first_sentence_end(text),
                neutral=neutralise(text),
            )
        )
    return out


def load_biosbias_pkl(source: str | os.PathLike | Iterable[dict]) -> list[Biography]:
    """Biographies from the ``BIOS.pkl`` of ``microsoft/biosbias`` (a pickled list of dicts).

    Uses ``raw`` (the whole bio) as context, ``raw[:start_pos]`` as the first sentence, ``name`` = first and
    last name, ``title`` as the occupation (rows with a title outside the 28 are skipped).

    Only unpickle files you trust: pickle can run code.
    """
    if isinstance(source, (str, os.PathLike)):
        if not os.path.exists(source):
            raise FileNotFoundError(f"No such file: {source}. Build BIOS.pkl with microsoft/biosbias.")
        with open(source, "rb") as f:
            rows = pickle.load(f)
    else:
        rows = list(source)
    out = []
    for i, row in enumerate(rows):
        try:
            raw, start, title, gender = str(row["raw"]), int(row["start_pos"]), str(row["title"]), row["gender"]
            name: Sequence[str] = row.get("name") or ()  # (first, middle, last) or empty
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"Row {i} is not a biosbias row with raw, start_pos, title, gender, name: {str(row)[:200]}"
            ) from None
        title = title.strip().lower().replace(" ", "_")
        if title not in OCCUPATIONS:
            continue
        parts = [p for p in (name[0], name[-1]) if p] if len(name) else []
        full = " ".join(dict.fromkeys(parts))  # first and last name (deduplicated when they coincide)
        raw = raw.strip()
        end = min(max(start, 1), len(raw))
        out.append(
            Biography(
                uid=f"biosbias:{i}",
                source="biosbias",
                name=full,
                occupation=title,
                gender=gender if gender in ("F", "M") else "",
                context=raw,
                first_sentence_end=end,
                neutral=neutralise(raw),
            )
        )
    return out


def split_biographies(bios: list[Biography], split: str, n: int | None, seed: int) -> list[Biography]:
    """A fixed 80/10/10 train/validation/test partition of a loaded list (seeded by nothing but the uids)."""
    check_split(split)
    ordered = seeded_sample(sorted(bios, key=lambda b: b.uid), None, 0, "bio-partition")
    k1, k2 = int(0.8 * len(ordered)), int(0.9 * len(ordered))
    part = {"train": ordered[:k1], "validation": ordered[k1:k2], "test": ordered[k2:]}[split]
    return seeded_sample(part, n, seed, f"bios-{split}")
