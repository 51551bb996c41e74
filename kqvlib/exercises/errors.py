"""Raw Python and torch errors turned into hints for the exercise checkers: which kind of slip raises
this error (a matrix product that does not fit, shapes that do not broadcast, a reshape to the wrong
sizes, mixed dtypes, an index past the end, a tuple unpacked into the wrong number of names, …), with the
learner's own line that raised it, read from the traceback. :mod:`kqvlib.exercises.diagnose` uses it after
each chapter's own explanations.
"""
from __future__ import annotations

import linecache
import re
import traceback


# --- errors --------------------------------------------------------------------------------------------------

def learner_line(e: BaseException) -> str | None:
    """The source line of the last frame of ``e`` outside kqvlib and torch: the learner's own line."""
    for fr in reversed(traceback.extract_tb(e.__traceback__)):
        f = fr.filename.replace("\\", "/")
        if "/kqvlib/" in f or "/torch/" in f or "site-packages" in f or "/lib/python" in f:
            continue
        line = (fr.line or linecache.getline(fr.filename, fr.lineno)).strip()
        return line or None
    return None


_ERRORS = [
    (r"mat1 and mat2|cannot be multiplied|batch1|batch2|matmul|mm\b",
     ("matmul", "a matrix product did not fit: the last axis of the left side must equal the second-to-last of "
                "the right. Print the shapes of both sides; a transpose (.mT) is missing or on the wrong factor.")),
    (r"must match the size of tensor|could not be broadcast|not broadcastable|broadcast",
     ("broadcast", "two tensors did not line up for an elementwise operation: their sizes are compared from the "
                   "last axis backwards. A reduction lost its axis (keepdim=True), or a mask or vector needs an "
                   "extra axis ([:, None]) to sit along the right axis.")),
    (r"is invalid for input of size|view size is not compatible|shape '.*' is invalid",
     ("reshape", "a view/reshape asked for sizes whose product is not the number of elements, or a .view came "
                 "after a transpose (use .reshape or .contiguous().view). Read the sizes from x.shape rather "
                 "than fixing them.")),
    (r"expected scalar type|dtype|Double but found|Float but found|Long but found|must have the same dtype",
     ("dtype", "two tensors of different dtypes met (float32 against float64, or ints against floats): create "
               "new tensors with dtype=x.dtype (torch.zeros_like, torch.full_like, x.new_tensor), and check the "
               "order of a tuple you unpacked (torch.topk, sort and max return (values, indices)).")),
    (r"stack expects each tensor to be equal size|Sizes of tensors must match",
     ("stack", "torch.stack/torch.cat met tensors of different shapes: flatten each first (g.flatten()), or work "
               "tensor by tensor.")),
    (r"not implemented for '(Long|Int|Bool|Short|Byte)'",
     ("integer tensor", "a float operation (softmax, exp, mean, …) met a tensor of integers or booleans: ids or "
                        "indices went where values belong. Check the order of a tuple you unpacked (torch.sort and "
                        "topk return (values, indices)) and the dtype of tensors you built.")),
    (r"selected index k out of range",
     ("topk axis", "topk asked for more entries than that axis has: check its dim (the vocabulary is dim=-1, the "
                   "batch dim=0).")),
    (r"Dimension out of range", ("axis", "an axis index is out of range for this tensor: count axes from the "
                                         "end (-1 is the last) so any number of leading axes works.")),
    (r"index .* is out of bounds|out of range|list index", ("index", "an index ran past the end: a loop bound or "
                                                                     "slice is off by one (range(n) stops at n − 1).")),
    (r"too many values to unpack|not enough values to unpack",
     ("unpacking", "a tuple was unpacked into the wrong number of names: x.shape of a (B, H, T, hs) tensor has 4 "
                   "sizes, and a function that returns (a, b) gives 2.")),
    (r"Boolean value of Tensor with more than one value is ambiguous",
     ("ambiguous bool", "a whole tensor was used where Python needs one True/False (if, and, or, max(), min()): "
                        "use torch.where, &, |, torch.maximum, or compare element by element.")),
    (r"changed size during iteration", ("changed while looping", "the loop changes the collection it walks: "
                                                                "build a new one instead.")),
]


def explain_raw(e: BaseException) -> tuple[str, str] | None:
    """(key, hint) for a raw Python/torch error, naming the learner's line when it can be found."""
    msg = f"{type(e).__name__}: {e}"
    line = learner_line(e)
    where = f" The line that raised it: `{line}`." if line else ""
    for pattern, found in _ERRORS:
        if found is not None and re.search(pattern, msg, flags=re.I):
            return found[0], found[1] + where
    if isinstance(e, NameError):
        return "undefined name", (f"a name is not defined ({e}): a missing import (torch, math), a typo, or a "
                                  f"variable used before it is assigned.{where}")
    if isinstance(e, Exception):
        return "exception", ("your function stopped with an error before returning."
                             + (where or " Run it on a small input and read which line fails."))
    return None



__all__ = ["explain_raw", "learner_line"]
