"""Biographies for the JSON, pronoun and BiasBios tasks: one import for the example and its three sources.

The PASTA paper builds three of its four tasks on BiasBios (De-Arteaga et al., 2019): short web biographies
labelled with one of 28 occupations and a binary gender. Each part has its own module, all re-exported here:

* :mod:`pasta_lens.tasks.bio_example`: :class:`Biography` and the 28 :data:`OCCUPATIONS`;
* :mod:`pasta_lens.tasks.real_bios`: the real formats (``LabHC/bias_in_bios`` rows, ``microsoft/biosbias``'s
  ``BIOS.pkl``), :func:`neutralise`, :func:`split_biographies`;
* :mod:`pasta_lens.tasks.named_bios`: :func:`synthetic_biographies`, seeded bios whose first sentence names the
  occupation (neither real format can be downloaded on this project's machines), with gendered and neutral forms;
* :mod:`pasta_lens.tasks.implied_bios`: bios that only imply it (not re-exported here; see
  :func:`pasta_lens.tasks.implied_biographies`).

Example:
    >>> from pasta_lens.tasks.biographies import synthetic_biographies
    >>> synthetic_biographies("test", n=1)[0].first_sentence  # e.g. 'Maria Lopez is a nurse based in Lisbon.'
"""

from __future__ import annotations

from pasta_lens.tasks.bio_example import OCCUPATIONS, Biography, occupation_text, with_article
from pasta_lens.tasks.named_bios import (
    CITIES,
    FIRST_NAMES,
    HOBBIES,
    LAST_NAMES,
    PRONOUNS,
    RELATIVES,
    SCHOOLS,
    SPLIT_SIZES,
    TEMPLATES,
    synthetic_biographies,
    synthetic_biography,
)
from pasta_lens.tasks.real_bios import (
    first_sentence_end,
    load_bias_in_bios,
    load_biosbias_pkl,
    neutralise,
    split_biographies,
)

__all__ = [
    "CITIES",
    "FIRST_NAMES",
    "HOBBIES",
    "LAST_NAMES",
    "OCCUPATIONS",
    "PRONOUNS",
    "RELATIVES",
    "SCHOOLS",
    "SPLIT_SIZES",
    "TEMPLATES",
    "Biography",
    "first_sentence_end",
    "load_bias_in_bios",
    "load_biosbias_pkl",
    "neutralise",
    "occupation_text",
    "split_biographies",
    "synthetic_biographies",
    "synthetic_biography",
    "with_article",
]
