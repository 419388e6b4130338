"""Head profiling: which attention heads, steered alone, help a task most; and which set to keep.

The score of head ``(l, h)`` on a task is the mean change of the task objective ``f`` (a scalar per example,
higher is better, see :mod:`pasta_lens.objectives`) when that head alone is steered with PASTA:

    score[l, h] = mean_examples ( f(model with T_{l,h} applied) - f(model) )

where ``T_{l,h}`` rescales head ``(l, h)``'s attention pattern ``A`` to ``A * w / sum(A * w)`` (``w = alpha`` on
prompt keys outside the emphasised span, 1 elsewhere): exactly :func:`pasta_lens.pasta_hooks`.

Three ways to compute it:

- ``exact``: run the edit for every head. The batch dimension carries one steered head per copy of the example
  (copy ``i`` steers head ``h_i`` and nothing else), so ``heads_per_batch`` heads cost one forward pass.
  Cost per example: ``n_layers * n_heads / heads_per_batch`` batched forwards.
- ``attribution``: a first-order Taylor estimate from one forward and one backward pass per example:

      score[l, h] ~ sum_{q,k} dF/dA[l, h, q, k] * (T(A)[l, h, q, k] - A[l, h, q, k])

  with the gradient taken through ``blocks.{l}.attn.hook_pattern`` and ``T`` the exact PASTA transform. It
  equals ``exact`` to first order in ``(1 - alpha)`` and ranks heads well at ``alpha = 0.01`` in practice.
- ``hybrid``: attribution for all heads, then ``exact`` re-scoring of the ``top_m`` heads by attribution, every
  one on the same first ``rescore_examples`` examples. The ranking is the attribution ranking with that top block
  re-ordered by the exact scores: exact numbers are compared only with exact numbers over the same examples, so a
  top-k with ``k <= top_m`` is decided exactly, and beyond ``top_m`` by attribution (which ``make_profile``
  refuses unless asked, and then says in the profile's ``method``). :class:`HeadScores` records per head which
  estimator gave its score and over how many examples (``exact``, ``counts``).

Profiling one task gives a :class:`HeadScores`. :func:`select_heads` combines several tasks' rankings as in the
paper: the ``intersection`` of the per-task top-k (default), their ``union``, or one task's top-k
(``task_specific``). :func:`ablation_curve` steers each candidate set on validation examples and reports the
objective gain against the number of heads; :func:`choose_k` picks k from that curve (:func:`choose_point` the
whole point). Choosing by the tasks' own metrics on generations instead (k, strategy and steering schedule) is
:func:`pasta_lens.evaluation.metric_curve`, a later stage since it runs the evaluation harness.

Beyond the paper, :mod:`~pasta_lens.profiling.learned` fits one steering strength per head,
``alpha_h = alpha_min ** sigmoid(g_h)``, by gradient descent on the tasks' objectives plus a fluency (KL) and a
sparsity term, starting from the attribution scores (:func:`learn_alphas` with a :class:`LearnedConfig`,
:func:`learned_profile`: a profile with per-head alphas).

Long runs are resumable: with ``checkpoint=path`` the per-example results are written (atomically) after every
example, and a restart with the same arguments skips the finished examples and returns an identical result. A row
is reused only for the same example and objective (a changed contrast answer is recomputed); the file is locked
while a run writes it, and the compute time of every segment is summed into ``HeadScores.wall_time_s``.

The package follows the data flow: :mod:`~pasta_lens.profiling.estimators` (one example's exact or attribution
scores), :mod:`~pasta_lens.profiling.scoring` (their mean over a task's examples, for one task or several),
:mod:`~pasta_lens.profiling.checkpoints` (the resumable per-example store it writes to),
:mod:`~pasta_lens.profiling.head_scores` (:class:`HeadScores`: a task's table and its ranking),
:mod:`~pasta_lens.profiling.selection` (rankings -> head set -> :class:`~pasta_lens.head_profile.HeadProfile`),
:mod:`~pasta_lens.profiling.learned` (per-head strengths fitted from the attribution start) and
:mod:`~pasta_lens.profiling.union` (one profile steering every head of several).
Everything is importable from ``pasta_lens.profiling``.
"""

from pasta_lens.head_profile import STRATEGIES, HeadProfile
from pasta_lens.profiling.checkpoints import CHECKPOINT_VERSION
from pasta_lens.profiling.estimators import attribution_scores, exact_scores, pasta_delta
from pasta_lens.profiling.head_scores import METHODS, HeadScores, Method
from pasta_lens.profiling.learned import (
    LearnedAlphas,
    LearnedConfig,
    base_alphas,
    content_targets,
    init_logits,
    learn_alphas,
    learned_profile,
    own_continuations,
)
from pasta_lens.profiling.scoring import profile_heads, profile_tasks
from pasta_lens.profiling.selection import (
    AblationPoint,
    Strategy,
    ablation_curve,
    choose_k,
    choose_point,
    make_profile,
    scores_from_profile,
    select_heads,
)
from pasta_lens.profiling.union import union_profiles

__all__ = [
    "CHECKPOINT_VERSION",
    "METHODS",
    "STRATEGIES",
    "AblationPoint",
    "HeadProfile",
    "HeadScores",
    "LearnedAlphas",
    "LearnedConfig",
    "Method",
    "Strategy",
    "ablation_curve",
    "attribution_scores",
    "base_alphas",
    "choose_k",
    "choose_point",
    "content_targets",
    "exact_scores",
    "init_logits",
    "learn_alphas",
    "learned_profile",
    "make_profile",
    "own_continuations",
    "pasta_delta",
    "profile_heads",
    "profile_tasks",
    "scores_from_profile",
    "select_heads",
    "union_profiles",
]
