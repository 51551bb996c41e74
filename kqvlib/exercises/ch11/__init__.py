"""Checkers for chapter 11, *Generating text, and the KV cache*.

    check_top_k_probs(fn)    fn(logits, k) → probabilities: the k most likely tokens, renormalised
    check_top_p_probs(fn)    fn(logits, p, temperature) → probabilities: logits / temperature FIRST,
                             then the nucleus (the smallest set of most likely tokens whose probability
                             reaches p, the token that crosses p included), renormalised

logits are (B, V) float64 with B = 3 rows and V = 11 tokens, so a transpose or a softmax over the wrong
axis fails loudly. Every Mistake below is a slip a learner is likely to make, with its own hint.

Two sampling rules the chapter does not show (module ``rules``):

    check_min_p_probs(fn)          fn(logits, p_base) → probabilities: keep each row's tokens whose
                                   probability is at least p_base times that row's largest, renormalised
    check_repetition_penalty(fn)   fn(logits, prev, penalty) → logits: each token in row b's history prev[b]
                                   (once, however often it occurred) has its logit divided by penalty when
                                   positive and multiplied by it when negative (the CTRL rule)

A wrong distribution that no listed slip explains is compared with the right one token by token: which
tokens were kept that should not be (or dropped), in which rows, and whether the kept ones have the right
proportions.
"""
from kqvlib.exercises.ch11.rules import check_min_p_probs, check_repetition_penalty
from kqvlib.exercises.ch11.sampling import check_top_k_probs, check_top_p_probs, top_k_probs, top_p_probs

__all__ = ["check_top_k_probs", "check_top_p_probs", "check_min_p_probs", "check_repetition_penalty"]
