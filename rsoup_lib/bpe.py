"""Byte-level BPE tokenizers trained with Hugging Face ``tokenizers``.

Byte-level means every string is representable (the 256 bytes are the base alphabet), so the
tiny model never meets an unknown token; BPE merges frequent byte pairs until ``vocab_size``.
Special tokens: ``<|endoftext|>`` (beginning/end of a text; also separates packed documents)
and ``<|pad|>``. The result is a transformers ``PreTrainedTokenizerFast``, left-padded like
every rsoup policy tokenizer.
"""

from __future__ import annotations

from typing import Iterable

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
    )
