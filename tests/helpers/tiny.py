"""Tiny random causal LMs and an offline tokenizer for fast unit tests (built in memory, no network).

Two families of tests use them with different settings, kept bit for bit:

* the scoring engine and reliability tests: the defaults (a float64 LLaMA with eager attention,
  a 160-token tokenizer that adds <s>);
* the pruning and evaluation tests: ``tiny_llama(**PRUNING_LLAMA)`` and
  ``tiny_tokenizer(**PRUNING_TOKENIZER)`` (float32, weights redrawn larger, their own corpus).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: is the sky blue? Answer: yes",
    "def add(a, b):\n    return a + b",
    "A. red B. green C. blue D. yellow Answer:",
    "Parameters in shallow layers are activated by many inputs.",
    "Sparse activation in deep layers tracks the domain of the data.",
]

PRUNING_CORPUS = [
    "The cat sat on the mat. The dog sat on the log.",
    "Question: is the sky blue?\nAnswer: yes",
    "A. red\nB. green\nC. blue\nD. yellow\nAnswer:",
    "Pruning removes weights; calibration data picks which ones.",
    "0. push the door\n1. pull the door\n###\n",
]

# The pruning/evaluation tests' tokenizer: 300 tokens from PRUNING_CORPUS, <s> also before
# sentence pairs, padding side recorded in tokenizer_config.json.  Pass ``bos`` as well: it is off
# in those tests unless they ask for it (LLaMA/Gemma-like).
PRUNING_TOKENIZER = {"vocab_size": 300, "corpus": PRUNING_CORPUS, "bos_pairs": True, "padding_side": "right"}

# The pruning/evaluation tests' model: float32, every matrix redrawn from N(0, 0.2) so that logits
# differ visibly between tokens, transformers' default attention, pad id 0.  Pass ``vocab`` as
# well (128 unless the tokenizer's size is wanted).
PRUNING_LLAMA = {"dtype": torch.float32, "std": 0.2, "attn": None, "pad_id": 0}


def tiny_tokenizer(pad: bool = True, vocab_size: int = 160, *, bos: bool = True, corpus: list[str] = CORPUS,
                   bos_pairs: bool = False, padding_side: str | None = None):
    """A byte-level BPE trained in memory on ``corpus`` (four times) with <pad>, <s>, </s> as ids 0, 1, 2.

    ``bos`` adds <s> in front of each text like LLaMA's tokenizer (``bos_pairs``: in front of a
    pair of texts too); ``pad=False`` leaves the pad token unset; ``padding_side`` is passed to
    the constructor (it then appears in a saved tokenizer_config.json); padding is on the right
    either way.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(corpus) * 4, trainer)
    if bos:
        pair = {"pair": "<s> $A $B"} if bos_pairs else {}
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", **pair,
                                                           special_tokens=[("<s>", tok.token_to_id("<s>"))])
    side = {"padding_side": padding_side} if padding_side is not None else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>" if pad else None, **side)


def tiny_llama(dtype=torch.float64, layers: int = 3, vocab: int = 320, seed: int = 0, *, hidden: int = 32,
               inter: int = 64, std: float | None = None, attn: str | None = "eager", pad_id: int | None = None):
    """A random LLaMA (4 heads, 2 key-value heads, untied embeddings) in eval mode without gradients.

    ``std``: redraw every matrix from N(0, std) after the default initialisation (done in float32,
    before the cast to ``dtype``); ``attn``: the attention implementation (None: transformers'
    default); ``pad_id``: the configuration's pad_token_id (and the embedding's padding index).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    extra = {"attn_implementation": attn} if attn is not None else {}
    if pad_id is not None:
        extra["pad_token_id"] = pad_id
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=256,
                      tie_word_embeddings=False, **extra)
    m = LlamaForCausalLM(cfg)
    if std is not None:
        with torch.no_grad():
            for p in m.parameters():
                if p.dim() == 2:
                    p.normal_(0, std)
    m = m.to(dtype).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def tiny_gpt2(dtype=torch.float64, layers: int = 2, vocab: int = 320, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_embd=32, n_layer=layers, n_head=4, vocab_size=vocab, n_positions=256)
    m = GPT2LMHeadModel(cfg).to(dtype).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def save_tiny_model(path: Path, *, layers: int = 3, dtype=torch.float32, seed: int = 0) -> Path:
    """The tiny random LLaMA (float32 by default) and its tokenizer as a local Hugging Face directory
    (safetensors)."""
    tiny_llama(dtype, layers=layers, seed=seed).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path
