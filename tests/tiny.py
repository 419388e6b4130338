"""Tiny random models and a tiny fast tokenizer for unit tests: built in seconds, no downloads.

``tiny_model("llama")`` is a 3-layer grouped-query Llama (4 query heads, 2 KV heads); ``tiny_model("gpt2")`` a
2-layer GPT-2. Both share a byte-level BPE tokenizer trained here on a few sentences, with BOS/EOS/PAD tokens
and a ChatML-style chat template, saved to disk and loaded back (the bridge re-reads tokenizers by path).

Each exists on both backends: ``tiny_model(arch, backend="bridge")`` boots a ``TransformerBridge`` on the HF model,
``tiny_model(arch, backend="hooked")`` (TransformerLens 3.x) converts the same seeded weights into a
``HookedTransformer`` with TransformerLens' own converter (``pasta_lens.backends.hooked_from_hf``). Same seed, same
weights: the two give the same logits, so either can serve as the other's reference.
"""

from __future__ import annotations

import functools
import tempfile
from typing import Any

import torch

CORPUS = [
    "Maria is a nurse who lives in Paris. Answer in JSON format with the name and the occupation.",
    "The capital of France is Paris. Previously, the Eiffel Tower was in Rome. Currently it is in Paris.",
    "For the aforementioned text, substitute she and he with they and generate the occupation.",
    "John is a software engineer. He writes code and he likes tea. She is a professor of history.",
    '0123456789 {}[]":,.!?*<>/\\ abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ',
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@functools.lru_cache(maxsize=1)
def tiny_tokenizer_dir() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 5, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    path = tempfile.mkdtemp(prefix="pasta_tiny_tok_")
    fast.save_pretrained(path)
    return path


def tiny_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir())


def tiny_hf_model(arch: str = "llama", seed: int = 0):
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    tok = tiny_tokenizer()
    vocab = len(tok)
    if arch == "llama":
        # 2048 positions: task prompts reach ~340 tokens on this tiny tokenizer, and emphasize refuses a prompt
        # longer than the model's context (cfg.n_ctx).
        cfg = LlamaConfig(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    elif arch == "gpt2":
        cfg = GPT2Config(
            vocab_size=vocab,
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_positions=256,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
    else:
        raise ValueError(arch)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    # Random init gives near-uniform attention; larger weights give peaked, more informative patterns.
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.ndim == 2 and ("q_proj" in name or "k_proj" in name or "c_attn" in name):
                p.mul_(8.0)
    return hf.eval(), tok


_MODELS: dict[tuple[str, int, str, bool], Any] = {}
_HOOKS_AT_BUILD: dict[tuple[str, int, str, bool], dict[str, tuple[int, int, int, int]]] = {}


def tiny_model(arch: str = "llama", seed: int = 0, backend: str = "bridge", processing: bool = False):
    """A tiny random model on ``backend`` (cached: treat it as read-only, add hooks only via contexts).

    ``processing=True`` (hooked only) applies TransformerLens' fold_ln / center_writing_weights / center_unembed.
    The cache key is normalised (``tiny_model("llama")`` and ``tiny_model("llama", backend="bridge")`` are one
    model), so the hook-leak check of ``tests/conftest.py`` sees every shared model however it was asked for.
    """
    key = (str(arch), int(seed), str(backend), bool(processing))
    if key not in _MODELS:
        _MODELS[key] = _build(*key)
        _HOOKS_AT_BUILD[key] = module_hooks(_MODELS[key])
    return _MODELS[key]


def cached_models() -> dict[tuple[str, int, str, bool], Any]:
    """Every shared tiny model built so far, by its normalised key ``(arch, seed, backend, processing)``."""
    return dict(_MODELS)


LIBRARIES = ("transformers.", "transformer_lens.", "torch.")
"""Modules whose own hooks are the libraries' business: transformers installs output-capturing hooks lazily, on the
first forward that asks for attentions or hidden states, and they change no output."""


def module_hooks(model: Any) -> dict[str, tuple[int, int, int, int]]:
    """PyTorch hooks per module: ``{name: (forward, forward pre, backward, backward pre)}``, modules with any.

    Every hook of a TransformerLens ``HookPoint`` counts (``HookPoint.add_hook`` wraps the caller's function in
    its own); on other modules only hooks whose function is not defined by transformers, TransformerLens or
    torch (a test's, pasta_lens', a user's).
    """
    from transformer_lens.hook_points import HookPoint

    counts = {}
    for name, module in model.named_modules():
        every = isinstance(module, HookPoint)
        hooks = (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks, module._backward_pre_hooks)
        n = tuple(sum(1 for fn in d.values() if every or not _library_hook(fn)) for d in hooks)
        if any(n):
            counts[name] = n
    return counts


def _library_hook(fn: Any) -> bool:
    fn = getattr(fn, "__func__", getattr(fn, "func", fn))  # bound method, functools.partial
    return (getattr(fn, "__module__", None) or "").startswith(LIBRARIES)


def leaked_hooks(key: tuple[str, int, str, bool]) -> list[str]:
    """What the shared model ``key`` carries now that it did not carry when built: HookPoint hooks (the
    TransformerLens way to add a hook) and any other PyTorch module hook, each as ``"module: counts"``."""
    before, now = _HOOKS_AT_BUILD[key], module_hooks(_MODELS[key])
    return [
        f"{name}: {counts} (at build: {before.get(name, (0, 0, 0, 0))})"
        for name, counts in now.items()
        if counts != before.get(name, (0, 0, 0, 0))
    ]


def _build(arch: str, seed: int, backend: str, processing: bool):
    from pasta_lens.backends import bridge_class, hooked_from_hf

    hf, tok = tiny_hf_model(arch, seed)
    if backend == "hooked":
        return hooked_from_hf(hf, tok, name=f"tiny-{arch}", processing=processing)
    if processing:
        raise ValueError("processing=True is for backend='hooked'.")
    model = bridge_class().boot_transformers(f"tiny-{arch}", hf_model=hf, tokenizer=tok)
    model.eval()
    return model
