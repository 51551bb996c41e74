"""Checkers for chapter 13, *The cost of attention, and making it cheaper*.

    check_blockwise_attention(fn)   fn(q, k, v, block_size) → softmax(q kᵀ/√d) v, computed one block of
                                    block_size KEYS at a time with a running max m, a running sum l and
                                    a running output acc, never holding all the scores of a query at once
                                    (the method is checked: every tensor made during the call is watched,
                                    and a (T, S) one means the whole score matrix was built)
    check_stream_softmax(fn)        fn(chunks) → (m, l): each row's max and Σ exp(x − m) over a stream of
                                    (B, n_i) chunks read once, none kept (the stream watches for that)
    check_flash_backward_tile(fn)   fn(q, k, v, d_out, lse, delta) → (dq, dk, dv): one tile's share of
                                    attention's gradients, from the saved log-sum-exp

One module per exercise: ``blockwise``, ``stream`` and ``flash_tile``.

Blockwise attention: q (..., T, d), k (..., S, d), v (..., S, d_v) are float64; the keys span several
blocks, so a slip in how blocks are combined shows. The likely slips are listed (each with its own hint); an unlisted one is
diagnosed by property: if the learner's function is right with ONE block (block_size ≥ S), the error is in
combining blocks; else common.attention_property reads the output (a transpose, a constant factor, …).
The stream and tile checkers read a wrong pair (m, l) or triple (dq, dk, dv) part by part: swapped,
a shared max, the right total with another m, one gradient off by √d, only one of them wrong.
"""
from kqvlib.exercises.ch13.blockwise import check_blockwise_attention
from kqvlib.exercises.ch13.flash_tile import check_flash_backward_tile
from kqvlib.exercises.ch13.stream import check_stream_softmax

__all__ = ["check_blockwise_attention", "check_stream_softmax", "check_flash_backward_tile"]
