"""Every setting of a learned-strengths run in one frozen, validated object: :class:`LearnedConfig`.

A run of :func:`~pasta_lens.profiling.learn_alphas` is decided by its examples, its initial logits and this config.
The fields fall into the groups of ``pasta-lens profile --help`` (the CLI builds the config from its options):

- **optimisation**: ``steps``, ``lr``, ``per_step``, ``seed``, ``alpha_min``, ``checkpoint_every`` and the
  weights of the two standing terms, ``kl_weight`` (fluency) and ``sparsity``;
- **what the strengths are fitted to**: ``schedule`` (the query rows steered while training, as when used) and
  ``base`` (heads steered at fixed alphas, learned on top of);
- **extra task terms** (experimental): ``gain_cap``, ``close_weight``, ``early_weight``, ``focus_weight``;
- **keeping other tasks as they are** (experimental): ``protect_weight``, ``protect_reference``, ``protect_each``;
  ``content_weight`` (the document kept readable: a KL on context-QA answer tokens copied from the document).

:meth:`LearnedConfig.record` is what identifies the run: it goes into the checkpoint's fingerprint (a checkpoint of
another record is refused) and the profile's ``provenance["learned"]``. ``steps`` and ``checkpoint_every`` are not
part of it (a finished run may be continued with more steps; how often it is saved changes no number).

Adding a loss term: give it a weight field here with ``metadata={"record": "when_set"}`` and default 0 (it then
enters the record only when non-zero, so the fingerprints of earlier runs stay valid), and one entry in
:data:`pasta_lens.profiling.learned.losses.TASK_TERMS` or ``PENALTIES``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from pasta_lens.plan import ALPHA_MIN, Head
from pasta_lens.schedule import Schedule

PROTECT_REFERENCES = ("unsteered", "base")
"""What a protected task's answers are kept as: the unsteered model's, or the ``base`` heads' alone."""

KEEP_BELOW = 0.5
"""Default cut: heads whose learned alpha is below it are kept in the profile."""


def _positive_int(name: str, value: Any, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r} (the default is {default}).")
    return int(value)


def _weight(name: str, value: Any, fix: str = "0: off") -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 ({fix}); got {value!r}.")
    return number


@dataclass(frozen=True)
class LearnedConfig:
    """The settings of :func:`~pasta_lens.profiling.learn_alphas`, checked on construction.

    Attributes:
        steps: Adam steps in total (a resumed run continues up to this number).
        lr: Adam's learning rate on the logits ``g``.
        per_step: training examples per task in each step (the gradient is their mean); also the protected rows
            per step.
        seed: decides which examples each step sees (seeded per-epoch permutations).
        alpha_min: the strongest alpha a head can learn (``g -> +inf``), in [``ALPHA_MIN``, 1).
        checkpoint_every: write the checkpoint every this many steps (and at the end).
        kl_weight: weight of the fluency term, KL(steered || unsteered) on the prompt positions.
        sparsity: weight of ``sum_h sigmoid(g_h)`` over the learned heads.
        schedule: the query rows steered while training, as they will be steered when the profile is used
            (``"all"``: prompt and answer rows, the paper's; ``"prompt"``: the prompt only, the teacher-forced answer
            standing for an unsteered generated one; ``"first:N"``, ``"decay:G"``). Stored in canonical form.
        base: ``{(layer, head): alpha}`` steered at those fixed alphas in every steered run (e.g.
            :func:`~pasta_lens.profiling.base_alphas` of a selected profile); the strengths are learned on top of
            it. Base heads take no gradient and no sparsity penalty; the profile keeps them.
        gain_cap: an example's task term counts at most this many nats per answer token above its unsteered value
            (None: no cap), so tasks that steering moves by many nats do not set the direction alone.
        close_weight: weight of ``log P(the answer's closing token)`` (``ProfilingExample.close``), undivided by
            the answer length.
        early_weight: weight of ``sum log(1 - P(closing token))`` over the earlier answer positions whose gold
            token is another (the answer must not close before its end).
        focus_weight: weight of the mean log-prob of the focus tokens (``ProfilingExample.focus``).
        protect_weight: weight of the protect term (KL on the protected examples' targets).
        protect_reference: what the protected answers are kept as: ``"unsteered"`` or ``"base"`` (the model
            steered by ``base`` alone), for every protected task or per task
            (``{"pronoun": "unsteered", "counterfact": "base"}``).
        protect_each: with several protected tasks, each gets its own ``per_step`` rows per step (False: one pool
            of ``per_step`` rows drawn across them).
        content_weight: weight of the content term: ``mean KL(unsteered || steered)`` over the document-dependent
            answer positions of ``per_step`` content examples per step (context-QA prompts with the unsteered
            model's own answer, :func:`~pasta_lens.profiling.learned.content_targets`), so that the steered model
            still reads the document (0: off, the default).

    Raises:
        ValueError: a value out of range, naming the field and what it accepts.

    Example:
        >>> config = LearnedConfig(steps=80, per_step=2, schedule="prompt", close_weight=0.5,
        ...                        base=base_alphas(load_profile("smollm2-135m-instruct-metric")))
        >>> learn_alphas(model, train, init, config)
    """

    # optimisation
    steps: int = 100
    lr: float = 0.1
    per_step: int = 1
    seed: int = 0
    alpha_min: float = 0.01
    checkpoint_every: int = 5
    kl_weight: float = 1.0
    sparsity: float = 0.01
    # what the strengths are fitted to
    schedule: str = "all"
    base: Mapping[Head, float] = field(default_factory=dict)
    # extra task terms (experimental)
    gain_cap: float | None = None
    close_weight: float = 0.0
    early_weight: float = 0.0
    focus_weight: float = 0.0
    # keeping other tasks as they are (experimental)
    protect_weight: float = 1.0
    protect_reference: str | Mapping[str, str] = "unsteered"
    protect_each: bool = False
    content_weight: float = field(default=0.0, metadata={"record": "when_set"})

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        for name in ("steps", "per_step", "checkpoint_every"):
            set_(name, _positive_int(name, getattr(self, name), _DEFAULTS[name]))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer; got {self.seed!r}.")
        if isinstance(self.lr, bool) or not (math.isfinite(float(self.lr)) and float(self.lr) > 0):
            raise ValueError(f"lr must be a finite number > 0 (the default is 0.1); got {self.lr!r}.")
        set_("lr", float(self.lr))
        for name in ("kl_weight", "sparsity"):
            set_(name, _weight(name, getattr(self, name), f"the default is {_DEFAULTS[name]}"))
        for name in ("close_weight", "early_weight", "focus_weight", "protect_weight"):
            set_(name, _weight(name, getattr(self, name)))
        for f in fields(self):  # weights of terms added later: recorded only when set
            if f.metadata.get("record") == "when_set":
                set_(f.name, _weight(f.name, getattr(self, f.name)))
        if not (ALPHA_MIN <= float(self.alpha_min) < 1.0):
            raise ValueError(
                f"alpha_min must be in [{ALPHA_MIN:g}, 1) (the strongest alpha a head may learn); got "
                f"{self.alpha_min} (the default is 0.01)."
            )
        set_("alpha_min", float(self.alpha_min))
        if self.gain_cap is not None:
            if isinstance(self.gain_cap, bool) or not (math.isfinite(float(self.gain_cap)) and self.gain_cap > 0):
                raise ValueError(
                    f"gain_cap must be a finite number of nats > 0 (or None for no cap); got {self.gain_cap}."
                )
            set_("gain_cap", float(self.gain_cap))
        set_("schedule", str(Schedule.parse(self.schedule)))  # a bad spec raises naming the accepted forms
        set_("base", _check_base(self.base))
        self._check_protect()
        set_("protect_each", bool(self.protect_each))

    def _check_protect(self) -> None:
        spec = self.protect_reference
        values = [spec] if isinstance(spec, str) else list(dict(spec).values())
        bad = [r for r in values if r not in PROTECT_REFERENCES]
        if bad:
            raise ValueError(
                f"protect_reference must be one of {PROTECT_REFERENCES} (or a mapping of protected tasks "
                f"to them); got {spec!r}."
            )
        if "base" in values and not self.base:
            raise ValueError(
                "protect_reference 'base' keeps what the base heads do: give them with base=... (CLI: "
                "--base-profile), or protect against 'unsteered'."
            )
        if not isinstance(spec, str):
            object.__setattr__(self, "protect_reference", {str(t): r for t, r in dict(spec).items()})

    def references(self, tasks: Sequence[str]) -> dict[str, str]:
        """``{task: "unsteered" | "base"}`` for the protected ``tasks``: the one reference for all, or the
        mapping, which must name exactly these tasks.

        Example:
            >>> LearnedConfig(protect_reference="unsteered").references(["pronoun"])
            {'pronoun': 'unsteered'}
        """
        spec = self.protect_reference
        if isinstance(spec, str):
            return {task: spec for task in tasks}
        extra, missing = sorted(set(spec) - set(tasks)), sorted(set(tasks) - set(spec))
        if extra or missing:
            raise ValueError(
                f"protect_reference must name exactly the protected tasks {list(tasks)}; "
                + (f"it names {extra}, which are not protected" if extra else f"{missing} are missing")
            )
        return {t: spec[t] for t in tasks}

    def record(self, protected_tasks: Sequence[str] = (), n_protected: int = 0) -> dict[str, Any]:
        """The run's settings as recorded in its checkpoint fingerprint and profile (``provenance["learned"]``).

        ``protect`` holds the protected tasks, their example count and weight (None without protected examples),
        with ``each`` and ``reference`` only when set (a record without them means one pool, all unsteered).

        Example:
            >>> LearnedConfig().record()["schedule"]
            'all'
        """
        protect: dict[str, Any] | None = None
        if n_protected:
            references = self.references(list(protected_tasks))
            protect = {
                "tasks": list(protected_tasks),
                "n": int(n_protected),
                "weight": self.protect_weight,
                **({"each": True} if self.protect_each else {}),
                **({"reference": references} if "base" in references.values() else {}),
            }
        out: dict[str, Any] = dict(
            lr=self.lr,
            kl_weight=self.kl_weight,
            sparsity=self.sparsity,
            alpha_min=self.alpha_min,
            per_step=self.per_step,
            seed=self.seed,
            schedule=self.schedule,
            gain_cap=self.gain_cap,
            close_weight=self.close_weight,
            focus_weight=self.focus_weight,
            early_weight=self.early_weight,
            protect=protect,
            base=[[layer, head, alpha] for (layer, head), alpha in sorted(self.base.items())],
        )
        for f in fields(self):
            if f.metadata.get("record") == "when_set" and getattr(self, f.name):
                out[f.name] = getattr(self, f.name)
        return out


_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(LearnedConfig)}


def _check_base(base: Any) -> dict[Head, float]:
    """``base`` as ``{(layer, head): alpha}``, every alpha a valid steering strength."""
    if base is None:
        return {}
    if not isinstance(base, Mapping):
        raise ValueError(
            f"base must be a mapping {{(layer, head): alpha}} (e.g. base_alphas(profile)); got {type(base).__name__}."
        )
    out = {}
    for head, alpha in base.items():
        try:
            layer, index = (int(x) for x in head)
        except (TypeError, ValueError):
            raise ValueError(f"base head {head!r} must be a (layer, head) pair of integers.") from None
        if layer < 0 or index < 0:
            raise ValueError(f"base head {head} must be a (layer, head) pair of non-negative integers.")
        if not (ALPHA_MIN <= float(alpha) <= 1.0):
            raise ValueError(f"base head {head} has alpha {alpha}; a steering alpha lies in [{ALPHA_MIN:g}, 1].")
        out[(layer, index)] = float(alpha)
    return dict(sorted(out.items()))
