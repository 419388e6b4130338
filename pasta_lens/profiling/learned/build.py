"""Learned strengths -> a :class:`~pasta_lens.head_profile.HeadProfile`: the heads worth steering, each at its alpha.

After training, the learned heads with ``alpha_h < keep_below`` (default 0.5: at least half of the attention
outside the span removed before renormalising) form the profile's head set, each with its learned alpha
(``HeadProfile.head_alphas``), beside the ``base`` heads at their fixed alphas; the weaker heads are not steered
at all. That cut is a difference from the trained soft model, which the recorded full alpha table
(``provenance["alphas_all"]``) lets one inspect. The profile records the schedule it was trained with
(``provenance["schedule"]``), so it is steered the way it was trained, and every setting of the run
(``provenance["learned"]``), with a description of each loss term.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pasta_lens.fingerprint import ModelFingerprint, weights_hash
from pasta_lens.head_profile import HeadProfile, score_table
from pasta_lens.profiling.head_scores import HeadScores
from pasta_lens.profiling.learned import losses
from pasta_lens.profiling.learned.config import KEEP_BELOW
from pasta_lens.profiling.learned.strengths import LearnedAlphas


def learned_profile(
    model: Any,
    model_name: str,
    learned: LearnedAlphas,
    *,
    keep_below: float = KEEP_BELOW,
    task_scores: Mapping[str, HeadScores] | None = None,
    seed: int | None = None,
    command: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    base_profile: HeadProfile | None = None,
    base_name: str | None = None,
) -> HeadProfile:
    """A :class:`~pasta_lens.head_profile.HeadProfile` of the heads with ``alpha < keep_below``, each at its alpha, and
    of the ``base`` heads the strengths were learned on top of (at their fixed alphas).

    ``base_profile``: the profile the base came from; its tasks (whose examples chose the base heads), example
    counts and score tables join the result's (for a task in both, the learned run's own table and count), and
    ``provenance["base_profile"]`` records it (``base_name``: the name or path it was loaded by, its method,
    command and heads).

    ``scores`` hold the attribution tables the logits were initialised from (``task_scores``), ``alpha`` is
    ``alpha_min`` (the strength those scores were measured at), ``k`` and ``strategy`` are None (no top-k
    selection), and ``provenance`` records the settings, the loss at the start and end, every head's alpha
    (``alphas_all``) and the wall time.

    Raises:
        ValueError: no head is below ``keep_below`` and there is no base (lower ``sparsity`` or ``kl_weight``,
            train longer, or raise ``keep_below``).

    Example:
        >>> profile = learned_profile(model, "smollm2-135m-instruct", learned, task_scores=scores)
        >>> profile.head_alphas      # {(layer, head): alpha}
    """
    if not 0.0 < keep_below <= 1.0:
        raise ValueError(f"keep_below must be in (0, 1]; got {keep_below}.")
    kept = learned.kept(keep_below)
    if not kept and not learned.base:
        best = float(learned.alphas.min())
        raise ValueError(
            f"No head learned an alpha below {keep_below} (the strongest is {best:.3g}): lower the "
            "sparsity or the KL weight, train for more steps, or raise keep_below."
        )
    tasks = tuple(learned.n_examples)
    sizes = sorted(set(learned.n_examples.values()))
    per_task = str(sizes[0]) if len(sizes) == 1 else "/".join(str(learned.n_examples[t]) for t in tasks)
    st = learned.settings
    schedule = str(st.get("schedule", "all"))
    method = (
        f"learned (per-head alphas alpha_min**sigmoid(g), alpha_min {st['alpha_min']:g}; {learned.steps} Adam "
        f"steps of {st['per_step']} example(s) per task from {per_task} train examples per task; "
        f"lr {st['lr']:g}, kl_weight {st['kl_weight']:g}, sparsity {st['sparsity']:g}{_extra_terms(st)}; "
        f"trained and steered with schedule {schedule}; initialised from attribution; {len(kept)} heads with "
        f"alpha < {keep_below:g} kept" + (f", on top of {len(learned.base)} fixed base heads)" if learned.base else ")")
    )
    steered = {**kept, **dict(learned.base)}
    prov = dict(provenance or {})
    if base_profile is not None:
        prov["base_profile"] = {
            "profile": base_name,
            "method": base_profile.method,
            "command": base_profile.command,
            "heads": [list(h) for h in base_profile.heads],
        }
    prov.update(
        {
            "schedule": schedule,  # steer the profile with the rows it was trained on (pasta_lens.plan.spec_schedule)
            "learned": {
                **st,
                "steps": learned.steps,
                "keep_below": keep_below,
                **_term_formulas(st),
                "init": "g = init_bias + init_scale * mean_t(attribution_t / max|attribution_t|)",
            },
            "losses": learned.losses(),
            "learning_wall_time_s": round(learned.wall_time_s, 1),
            "alphas_all": [[round(float(a), 5) for a in row] for row in learned.alphas.tolist()],
            "init_logits": [[round(float(x), 4) for x in row] for row in learned.init_g.tolist()],
        }
    )
    scores = {t: score_table(s.scores) for t, s in (task_scores or {}).items()}
    n_examples = dict(learned.n_examples)
    if base_profile is not None:
        tasks = tuple(dict.fromkeys(tuple(base_profile.tasks) + tasks))
        scores = {**dict(base_profile.scores), **scores}
        n_examples = {**dict(base_profile.n_examples), **n_examples}
    return HeadProfile(
        model_name=model_name,
        n_layers=int(model.cfg.n_layers),
        n_heads=int(model.cfg.n_heads),
        heads=tuple(steered),
        head_alphas=steered,
        weights_hash=weights_hash(model),
        fingerprint=ModelFingerprint.of(model),
        tasks=tasks,
        method=method,
        alpha=st["alpha_min"],
        k=None,
        strategy=None,
        n_examples=n_examples,
        seed=seed,
        command=command,
        scores=scores,
        provenance=prov,
    )


def _extra_terms(st: Mapping[str, Any]) -> str:
    """The method's list of the terms beyond the defaults: gain cap, each set task term, the protect term."""
    text = "" if st.get("gain_cap") is None else f", gain cap {st['gain_cap']:g} nats per answer token"
    for term in losses.TASK_TERMS:
        if st.get(term.weight):
            text += f", {term.label} {st[term.weight]:g}"
    if st.get("protect"):
        against = st["protect"].get("reference")
        against = "" if not against else "; against " + ", ".join(f"{t}: {r}" for t, r in against.items())
        each = f"; {st['per_step']} of each task per step" if st["protect"].get("each") else ""
        text += (
            f", KL on {st['protect']['n']} protected {'/'.join(st['protect']['tasks'])} answers (weight "
            f"{st['protect']['weight']:g}{against}{each})"
        )
    if st.get("content_weight"):
        content = st.get("content") or {}
        text += (
            f", content KL on the document-dependent answer tokens of {content.get('n', '?')} "
            f"{'/'.join(content.get('tasks', ['context_qa']))} answers (weight {st['content_weight']:g})"
        )
    return text


def _term_formulas(st: Mapping[str, Any]) -> dict[str, str]:
    """``provenance["learned"]``'s description of each term of the run, from the tables of :mod:`.losses`."""
    out = {f"{p.title}_term": p.formula for p in losses.PENALTIES}
    task = "objective / answer tokens, mean over examples, tasks weighted equally"
    if st.get("gain_cap") is not None:
        task += "; at most gain_cap above the unsteered value per example"
    out["task_term"] = task + "".join(f"; plus {term.formula}" for term in losses.TASK_TERMS if st.get(term.weight))
    if st.get("protect"):
        out["protect_term"] = (
            "protect weight * KL(steered || reference) over the positions predicting the "
            "protected examples' targets, per_step of them per step; reference: the unsteered "
            "model, or the base heads alone for a task whose protect.reference is 'base'"
        )
    if st.get("content_weight"):
        out["content_term"] = (
            "content_weight * mean over per_step content examples per step of mean_{i in focus} "
            "KL(p_unsteered(.|i) || p_steered(.|i)); the examples: context_qa prompts with the unsteered "
            "model's own greedy answer, focus = the answer tokens copied from the document"
        )
    return out
