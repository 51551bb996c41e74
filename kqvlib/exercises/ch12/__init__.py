"""Checkers for chapter 12, *Encoders, decoders and cross-attention*.

    check_cross_attention(fn)   fn(x, memory, memory_mask, Wq, Wk, Wv) → (B, T, d_v): one head of
                                cross-attention, softmax(Q Kᵀ/√d_k, blocked keys −∞) V with
                                Q = x Wq (queries from the decoder), K = memory Wk, V = memory Wv
                                (keys and values from the encoder)

x is (B, T, C), memory (B, S, C), memory_mask (B, S) bool with True for a real source token, Wq and Wk
(C, d_k), Wv (C, d_v). All sizes differ (B=2, T=4, S=7, C=6, d_k=5, d_v=8), so keys taken from the
decoder, a (T, T) mask or a mask laid along the queries raise or give other numbers. The first trial has
no padding (every mask entry True), so the slips of softmax(Q Kᵀ/√d_k) V shared with earlier chapters show
as they are; the second pads the source, so a mask that is ignored or inverted shows too.

Two more exercises build what the decoder reads (module ``decoder``):

    check_decoder_mask(fn)      fn(tgt_lengths (B,), T) → bool (B, 1, T, T): query t may see key s when
                                s ≤ t (causal) and s < tgt_lengths[b] (a real target token); True = attend
    check_teacher_forcing(fn)   fn(tgt_out (B, T), bos, eos, pad) → (tgt_in, labels): tgt_in = BOS then
                                tgt_out shifted right by one, with the EOS it reads turned into PAD;
                                labels = tgt_out with PAD replaced by −100 (cross-entropy's ignore_index)

One module per group: ``cross`` (cross_attention) and ``decoder`` (decoder_mask, teacher_forcing).
"""
from kqvlib.exercises.ch12.cross import check_cross_attention
from kqvlib.exercises.ch12.decoder import check_decoder_mask, check_teacher_forcing

__all__ = ["check_cross_attention", "check_decoder_mask", "check_teacher_forcing"]
