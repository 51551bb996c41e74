"""Held-out learner slips for chapter 11 (generation): top-k and top-p probabilities."""
import torch
import torch.nn.functional as F

NEG = float("-inf")

# ------------------------------------------------------------ check_top_k_probs: top_k_probs(logits, k)


def topk_one_threshold_for_batch(logits, k):
    kth = torch.topk(logits.flatten(), k).values[-1]  # the k-th largest of the whole batch
    return F.softmax(logits.masked_fill(logits < kth, NEG), dim=-1)


def topk_over_batch_axis(logits, k):
    kth = torch.topk(logits, k, dim=0).values[-1:]  # (1, V): per column, not per row
    return F.softmax(logits.masked_fill(logits < kth, NEG), dim=-1)


def topk_kth_without_keepdim(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[:, -1]  # (B,): broadcasts along V, not B
    return F.softmax(logits.masked_fill(logits < kth, NEG), dim=-1)


def topk_left_in_sorted_order(logits, k):
    B = logits.shape[0]
    vals, _ = torch.topk(logits, k, dim=-1)
    out = torch.zeros_like(logits)
    return out.scatter(-1, torch.arange(k).expand(B, k), F.softmax(vals, dim=-1))


def topk_softmax_twice(logits, k):
    probs = F.softmax(logits, dim=-1)
    kth = torch.topk(probs, k, dim=-1).values[:, -1:]
    return F.softmax(probs.masked_fill(probs < kth, NEG), dim=-1)  # softmax of probabilities


def topk_masks_logits_in_place(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    logits[logits < kth] = NEG  # modifies the caller's logits
    return F.softmax(logits, dim=-1)


def topk_log_probs(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    return F.log_softmax(logits.masked_fill(logits < kth, NEG), dim=-1)


# ------------------------------------------------- check_top_p_probs: top_p_probs(logits, p, temperature)


def topp_gather_not_scatter(logits, p, temperature):
    logits = logits / temperature
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)
    keep_sorted = probs.cumsum(-1) - probs < p
    keep = keep_sorted.gather(-1, order)  # the inverse permutation was needed
    return F.softmax(logits.masked_fill(~keep, NEG), dim=-1)


def topp_one_size_for_all_rows(logits, p, temperature):
    logits = logits / temperature
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)
    n_keep = int((probs[0].cumsum(-1) - probs[0] < p).sum())  # row 0's nucleus size, for every row
    keep_sorted = torch.zeros_like(probs, dtype=torch.bool)
    keep_sorted[:, :n_keep] = True
    keep = keep_sorted.scatter(-1, order, keep_sorted)
    return F.softmax(logits.masked_fill(~keep, NEG), dim=-1)


def topp_cumsum_over_batch(logits, p, temperature):
    logits = logits / temperature
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)
    keep_sorted = probs.cumsum(0) - probs < p
    keep = keep_sorted.scatter(-1, order, keep_sorted)
    return F.softmax(logits.masked_fill(~keep, NEG), dim=-1)


def topp_untempered_final_softmax(logits, p, temperature):
    scaled = logits / temperature
    sorted_logits, order = torch.sort(scaled, dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)
    keep_sorted = probs.cumsum(-1) - probs < p
    keep = keep_sorted.scatter(-1, order, keep_sorted)
    return F.softmax(logits.masked_fill(~keep, NEG), dim=-1)  # the raw logits again


def topp_roll_instead_of_shift(logits, p, temperature):
    logits = logits / temperature
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)
    keep_sorted = (probs.cumsum(-1) < p).roll(1, dims=-1)  # "shift right by one" with roll
    keep = keep_sorted.scatter(-1, order, keep_sorted)
    return F.softmax(logits.masked_fill(~keep, NEG), dim=-1)


def topp_sort_unpacked_backwards(logits, p, temperature):
    logits = logits / temperature
    order, sorted_logits = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)
    keep_sorted = probs.cumsum(-1) - probs < p
    keep = keep_sorted.scatter(-1, order, keep_sorted)
    return F.softmax(logits.masked_fill(~keep, NEG), dim=-1)


def topp_never_sorted(logits, p, temperature):
    logits = logits / temperature
    probs = F.softmax(logits, dim=-1)
    keep = probs.cumsum(-1) - probs < p  # cumulative mass in vocabulary order, no sort
    return F.softmax(logits.masked_fill(~keep, NEG), dim=-1)


SLIPS = [
    ("check_top_k_probs", "one_threshold_for_batch", topk_one_threshold_for_batch,
     "Took the k-th largest logit of the whole flattened batch as one threshold instead of each row's own."),
    ("check_top_k_probs", "topk_over_batch_axis", topk_over_batch_axis,
     "Ran torch.topk along dim=0 (down the batch), giving one threshold per vocabulary column."),
    ("check_top_k_probs", "kth_without_keepdim", topk_kth_without_keepdim,
     "Took values[:, -1] (shape (B,)) instead of values[:, -1:] (B, 1), so the thresholds broadcast along the vocabulary."),
    ("check_top_k_probs", "left_in_sorted_order", topk_left_in_sorted_order,
     "Put the softmax of the top-k values into the first k vocabulary slots instead of scattering them back to their token ids."),
    ("check_top_k_probs", "softmax_twice", topk_softmax_twice,
     "Took a softmax first and then a second softmax of the masked probabilities (softmax of probabilities, not of logits)."),
    ("check_top_k_probs", "masks_logits_in_place", topk_masks_logits_in_place,
     "Masked the logits in place (logits[logits < kth] = -inf), modifying the caller's tensor."),
    ("check_top_k_probs", "log_probs", topk_log_probs,
     "Returned log_softmax (log-probabilities) instead of probabilities."),

    ("check_top_p_probs", "gather_not_scatter", topp_gather_not_scatter,
     "Mapped the sorted mask back with gather(-1, order) instead of scatter, applying the permutation the wrong way."),
    ("check_top_p_probs", "one_size_for_all_rows", topp_one_size_for_all_rows,
     "Computed the nucleus size from row 0 and kept that many tokens in every row."),
    ("check_top_p_probs", "cumsum_over_batch", topp_cumsum_over_batch,
     "Took the cumulative sum along dim 0 (down the batch) instead of along the sorted vocabulary."),
    ("check_top_p_probs", "untempered_final_softmax", topp_untempered_final_softmax,
     "Chose the nucleus from the tempered logits but took the final softmax of the raw, untempered logits."),
    ("check_top_p_probs", "roll_instead_of_shift", topp_roll_instead_of_shift,
     "Shifted the keep mask with roll(1), which wraps the last token's flag round onto the most likely token."),
    ("check_top_p_probs", "sort_unpacked_backwards", topp_sort_unpacked_backwards,
     "Unpacked torch.sort as (indices, values) instead of (values, indices)."),
    ("check_top_p_probs", "never_sorted", topp_never_sorted,
     "Skipped the sort: took the cumulative mass in vocabulary order, so the 'nucleus' is the first tokens by id, not the most likely."),
]
