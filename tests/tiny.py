"""Tiny random causal LMs and an offline tokenizer for fast unit tests."""

from __future__ import annotations

import torch

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: is the sky blue? Answer: yes",
    "def add(a, b):\n    return a + b",
    "A. red B. green C. blue D. yellow Answer:",
    "Parameters in shallow layers are activated by many inputs.",
    "Sparse activation in deep layers tracks the domain of the data.",
]


def tiny_tokenizer(pad: bool = True, vocab_size: int = 160):
    """A byte-level BPE trained in memory (no network); adds BOS like LLaMA's tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>" if pad else None)
    fast.padding_side = "right"
    return fast


def tiny_llama(dtype=torch.float64, layers: int = 3, vocab: int = 320, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=256,
                      tie_word_embeddings=False, attn_implementation="eager")
    m = LlamaForCausalLM(cfg).to(dtype).eval()
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
