"""Tiny models and tokenizers for the pruning/evaluation tests (built in memory, offline)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

CORPUS = [
    "The cat sat on the mat. The dog sat on the log.",
    "Question: is the sky blue?\nAnswer: yes",
    "A. red\nB. green\nC. blue\nD. yellow\nAnswer:",
    "Pruning removes weights; calibration data picks which ones.",
    "0. push the door\n1. pull the door\n###\n",
] * 4


def tiny_tokenizer(bos: bool = False, vocab_size: int = 300):
    """A byte-level BPE trained on a few sentences; ``bos=True`` adds <s> like LLaMA/Gemma."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                           special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   padding_side="right")


def tiny_llama(vocab_size: int = 128, layers: int = 3, seed: int = 0, hidden: int = 32, inter: int = 64):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(cfg).eval()
    # Larger random weights than the default init so that logits differ visibly between tokens.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
