"""Metrics on generated text (pure Python, no model), one module per kind:

* :mod:`~pasta_lens.metrics.text`: the PASTA paper's metrics (JSON F.Acc / P.Acc, pronoun Acc / A.Acc) and ROME's
  fluency;
* :mod:`~pasta_lens.metrics.strict`: stricter metrics beside them (strict F.Acc / P.Acc, occupation in prose, the
  pronoun *rewrite*), each of which the cheapest cheats fail;
* :mod:`~pasta_lens.metrics.answers`: is a gold answer in a formatted answer (context QA correctness);
* :mod:`~pasta_lens.metrics.instructions`: checkers of verifiable instructions (IFEval's via ``if-verifiable``,
  plus language-free ones written here);
* :mod:`~pasta_lens.metrics.content`: how much of the unsteered model's correctness a steered method keeps.

Everything public is re-exported here: ``from pasta_lens.metrics import json_format_ok`` works as before.
"""

from pasta_lens.metrics.answers import answer_found, contains_words, normalise_answer
from pasta_lens.metrics.content import content_kept_ratios
from pasta_lens.metrics.instructions import (
    all_lower,
    all_upper,
    ifeval_check,
    json_with_key,
    loose_variants,
    no_digits,
    one_word,
    sentence_count,
    sentences,
    starts_with,
    wrapped_in,
)
from pasta_lens.metrics.strict import (
    OCCUPATION_NAMES,
    STOPWORDS,
    THEY_FORMS,
    content_kept,
    content_words,
    has_they_form,
    is_rewrite,
    json_strict_object,
    json_strict_occupation_ok,
    mentions,
    names_occupation,
    normalise_text,
    occupation_names,
)
from pasta_lens.metrics.text import (
    FEMALE_MALE_SUBJECT,
    GENDERED_PRONOUNS,
    fluency,
    is_fluent,
    json_complete_ok,
    json_format_ok,
    json_objects,
    json_occupation_ok,
    max_fluency,
    ngram_entropy,
    no_gendered_pronouns,
    no_subject_pronouns,
    normalise_occupation,
    word_tokens,
)

__all__ = [
    "FEMALE_MALE_SUBJECT",
    "GENDERED_PRONOUNS",
    "OCCUPATION_NAMES",
    "STOPWORDS",
    "THEY_FORMS",
    "all_lower",
    "all_upper",
    "answer_found",
    "contains_words",
    "content_kept",
    "content_kept_ratios",
    "content_words",
    "fluency",
    "has_they_form",
    "ifeval_check",
    "is_fluent",
    "is_rewrite",
    "json_complete_ok",
    "json_format_ok",
    "json_objects",
    "json_occupation_ok",
    "json_strict_object",
    "json_strict_occupation_ok",
    "json_with_key",
    "loose_variants",
    "max_fluency",
    "mentions",
    "names_occupation",
    "ngram_entropy",
    "no_digits",
    "no_gendered_pronouns",
    "no_subject_pronouns",
    "normalise_answer",
    "normalise_occupation",
    "normalise_text",
    "occupation_names",
    "one_word",
    "sentence_count",
    "sentences",
    "starts_with",
    "word_tokens",
    "wrapped_in",
]
