"""pasta_lens: PASTA attention steering (Zhang et al., ICLR 2024) as a TransformerLens extension.

Mark part of a prompt (``*like this*``) and steer chosen attention heads towards it with hook functions on
``blocks.{L}.attn.hook_pattern``::

    from pasta_lens import load_model, emphasize, pasta_hooks, steer, generate

    model = load_model("smollm2-135m-instruct")
    em = emphasize(model, "Maria is a nurse. *Answer in JSON.*", chat=True)
    logits = model.run_with_hooks(em.tokens, fwd_hooks=pasta_hooks({20: [0, 3]}, em, alpha=0.01))
"""

from pasta_lens import methods
from pasta_lens.evaluation import evaluate
from pasta_lens.fingerprint import weights_hash
from pasta_lens.generation import generate
from pasta_lens.head_profile import HeadProfile
from pasta_lens.hook_check import check_steerable
from pasta_lens.models import load_model
from pasta_lens.plan import SteeringPlan, normalize_heads, resolve_plan
from pasta_lens.profiling import (
    AblationPoint,
    HeadScores,
    ablation_curve,
    choose_k,
    make_profile,
    profile_heads,
    select_heads,
    union_profiles,
)
from pasta_lens.registry import default_heads, list_profiles, load_profile
from pasta_lens.spans import Emphasis, emphasize, parse_markup
from pasta_lens.steering import pasta_hooks, steer

__version__ = "0.2.0"

__all__ = [
    "AblationPoint",
    "Emphasis",
    "HeadProfile",
    "HeadScores",
    "ablation_curve",
    "check_steerable",
    "choose_k",
    "default_heads",
    "emphasize",
    "evaluate",
    "generate",
    "list_profiles",
    "load_model",
    "load_profile",
    "make_profile",
    "methods",
    "normalize_heads",
    "parse_markup",
    "pasta_hooks",
    "profile_heads",
    "resolve_plan",
    "select_heads",
    "steer",
    "SteeringPlan",
    "union_profiles",
    "weights_hash",
    "__version__",
]
