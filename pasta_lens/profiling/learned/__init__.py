"""Learned per-head steering strengths: one alpha per head, fitted by gradient descent (beyond the paper).

PASTA steers a fixed head set at one alpha. Steering is differentiable in alpha, so instead every head gets its own
strength, parametrised by one logit ``g_h``:

    alpha_h = alpha_min ** sigmoid(g_h)        g_h -> -inf: alpha_h -> 1 (no steering)
                                               g_h -> +inf: alpha_h -> alpha_min (full strength, default 0.01)

and the logits are fitted with Adam on the training objectives of several tasks at once (the same
:class:`~pasta_lens.objectives.ProfilingExample` objectives :func:`~pasta_lens.profiling.profile_tasks` scores heads
with), minimising per step

    loss = - mean_{tasks t} mean_{examples e of t in the step} f_e(steered) / n_answer(e)       (task term)
           + kl_weight * mean_e KL( p_steered || p_unsteered )  over e's prompt positions         (fluency term)
           + sparsity * sum_h sigmoid(g_h)                                                        (sparsity term)

plus the optional terms of :mod:`~pasta_lens.profiling.learned.losses` (a gain cap, the closing, early-close and
focus tokens, the protect term, the content term). The model is never modified: only ``g`` requires grad.

The package follows the data flow, one job per module:

- :mod:`~pasta_lens.profiling.learned.config`: :class:`LearnedConfig`, every setting of a run, validated;
- :mod:`~pasta_lens.profiling.learned.strengths`: ``g -> alpha``, the differentiable hooks, the initial logits
  from attribution (:func:`init_logits`), the result (:class:`LearnedAlphas`);
- :mod:`~pasta_lens.profiling.learned.targets`: the model's own continuations as targets
  (:func:`own_continuations`), the reference model of a protected task and the content term's examples
  (:func:`content_targets`);
- :mod:`~pasta_lens.profiling.learned.losses`: each loss term a small function, composed in one place;
- :mod:`~pasta_lens.profiling.learned.train`: the resumable training loop (:func:`learn_alphas`);
- :mod:`~pasta_lens.profiling.learned.build`: the profile of the heads worth steering (:func:`learned_profile`).

**Initialisation from attribution** (:func:`init_logits`): each task's first-order head scores at ``alpha_min``
divided by that task's largest absolute score and averaged over tasks give ``s_h`` in [-1, 1]; then
``g_h = init_bias + init_scale * s_h`` (defaults -4 and 6: a head with no attribution starts at alpha 0.92, almost
off; the best head of every task at g = 2, alpha 0.017). All heads remain trainable.

**Trained for its schedule.** ``LearnedConfig.schedule`` picks the query rows steered while training, the rows
:class:`~pasta_lens.schedule.Schedule` steers at generation: the teacher-forced answer tokens stand for the
generated ones, so ``"prompt"`` trains strengths for a model whose prompt is steered and whose answer is written
unsteered. The profile records its schedule and is steered with it unless told otherwise.

**On top of a profile** (``LearnedConfig.base``): the heads of a selected profile are steered at their fixed alphas
in every steered run while the other heads' strengths are learned, so the learner adds what the base does not do.

Example:
    >>> train = {t: get_task(t).profiling_examples(model, split="train", n=40) for t in TASK_NAMES}
    >>> scores = profile_tasks(model, train, method="attribution")
    >>> learned = learn_alphas(model, train, init_logits(scores), LearnedConfig(steps=100),
    ...                        checkpoint="run/learned.ckpt")
    >>> profile = learned_profile(model, "smollm2-135m-instruct", learned, task_scores=scores)
    >>> with steer(model, profile, em): ...                      # each head at its own alpha
"""

from pasta_lens.profiling.learned.build import learned_profile
from pasta_lens.profiling.learned.config import KEEP_BELOW, PROTECT_REFERENCES, LearnedConfig
from pasta_lens.profiling.learned.losses import (
    PENALTIES,
    TASK_TERMS,
    Penalty,
    TaskTerm,
    content_loss,
    content_teacher,
    example_loss,
    protect_loss,
)
from pasta_lens.profiling.learned.strengths import (
    LearnedAlphas,
    base_alphas,
    init_logits,
    learned_hooks,
    strengths_to_alphas,
)
from pasta_lens.profiling.learned.targets import content_targets, document_positions, own_continuations
from pasta_lens.profiling.learned.train import LEARNED_CHECKPOINT_VERSION, learn_alphas, protect_rows, step_indices

__all__ = [
    "KEEP_BELOW",
    "LEARNED_CHECKPOINT_VERSION",
    "PENALTIES",
    "PROTECT_REFERENCES",
    "TASK_TERMS",
    "LearnedAlphas",
    "LearnedConfig",
    "Penalty",
    "TaskTerm",
    "base_alphas",
    "content_loss",
    "content_targets",
    "content_teacher",
    "document_positions",
    "example_loss",
    "init_logits",
    "learn_alphas",
    "learned_hooks",
    "learned_profile",
    "own_continuations",
    "protect_loss",
    "protect_rows",
    "step_indices",
    "strengths_to_alphas",
]
