"""Held-out learner slips for chapter 8 (the block): layer_norm and block_forward."""
import torch

# ---------------------------------------------------- check_layer_norm: layer_norm(x, weight, bias, eps)


def ln_unbiased_var(x, weight, bias, eps):
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True)  # unbiased: divides by C - 1
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def ln_over_last_two_axes(x, weight, bias, eps):
    mean = x.mean(dim=(-2, -1), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(-2, -1), keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def ln_eps_outside_sqrt(x, weight, bias, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var) + eps * weight + bias


def ln_gain_bias_swapped(x, weight, bias, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * bias + weight


def ln_var_not_centred(x, weight, bias, eps):
    mean = x.mean(-1, keepdim=True)
    var = (x ** 2).mean(-1, keepdim=True)  # E[x^2], not E[(x - mu)^2]
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def ln_batch_axis(x, weight, bias, eps):
    mean = x.mean(0, keepdim=True)
    var = ((x - mean) ** 2).mean(0, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def ln_bias_before_gain(x, weight, bias, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return ((x - mean) / torch.sqrt(var + eps) + bias) * weight


def ln_centres_input_in_place(x, weight, bias, eps):
    x -= x.mean(-1, keepdim=True)  # modifies the caller's tensor
    var = (x ** 2).mean(-1, keepdim=True)
    return x / torch.sqrt(var + eps) * weight + bias


# ---------------------------------------------- check_block_forward: block_forward(x, ln1, attn, ln2, mlp)


def block_parallel(x, ln1, attn, ln2, mlp):
    return x + attn(ln1(x)) + mlp(ln2(x))  # the MLP reads the stream from before attention


def block_no_attn_residual(x, ln1, attn, ln2, mlp):
    x = attn(ln1(x))
    return x + mlp(ln2(x))


def block_residual_of_normed(x, ln1, attn, ln2, mlp):
    h = ln1(x)
    x = h + attn(h)
    h = ln2(x)
    return h + mlp(h)


def block_mlp_first(x, ln1, attn, ln2, mlp):
    x = x + mlp(ln2(x))
    return x + attn(ln1(x))


def block_attention_only(x, ln1, attn, ln2, mlp):
    return x + attn(ln1(x))


def block_norm_on_output(x, ln1, attn, ln2, mlp):
    x = x + ln1(attn(x))
    return x + ln2(mlp(x))


def block_no_mlp_residual(x, ln1, attn, ln2, mlp):
    x = x + attn(ln1(x))
    return mlp(ln2(x))


SLIPS = [
    ("check_layer_norm", "unbiased_var", ln_unbiased_var,
     "Used x.var(-1), the unbiased variance (divides by C - 1), with eps correctly inside the square root."),
    ("check_layer_norm", "over_last_two_axes", ln_over_last_two_axes,
     "Took the mean and variance over the last two axes (T and C) instead of only the last."),
    ("check_layer_norm", "eps_outside_sqrt_precedence", ln_eps_outside_sqrt,
     "Precedence: wrote (x - mu) / sqrt(var) + eps * weight + bias, so eps is added to the output, not to the variance."),
    ("check_layer_norm", "gain_bias_swapped", ln_gain_bias_swapped,
     "Swapped the roles of weight and bias: multiplied by bias and added weight."),
    ("check_layer_norm", "var_not_centred", ln_var_not_centred,
     "Computed the variance as mean(x**2), forgetting to subtract the mean first."),
    ("check_layer_norm", "batch_axis", ln_batch_axis,
     "Normalised over the first (batch) axis, as batch norm does, instead of the last."),
    ("check_layer_norm", "bias_before_gain", ln_bias_before_gain,
     "Added the bias before multiplying by the gain: (x_hat + beta) * gamma."),
    ("check_layer_norm", "centres_input_in_place", ln_centres_input_in_place,
     "Centred x in place (x -= mean): the result is right but the caller's x is modified."),

    ("check_block_forward", "parallel_branches", block_parallel,
     "Both branches read the original x (x + attn(ln1(x)) + mlp(ln2(x))): the MLP does not see attention's output."),
    ("check_block_forward", "no_attn_residual", block_no_attn_residual,
     "Dropped the residual around attention: x = attn(ln1(x))."),
    ("check_block_forward", "residual_of_normed", block_residual_of_normed,
     "Added each branch to the normalised stream (h + attn(h) with h = ln(x)) instead of to x."),
    ("check_block_forward", "mlp_first", block_mlp_first,
     "Ran the MLP sub-layer before the attention sub-layer."),
    ("check_block_forward", "attention_only", block_attention_only,
     "Returned after the attention sub-layer, never applying the MLP."),
    ("check_block_forward", "norm_on_output", block_norm_on_output,
     "Normalised each branch's output instead of its input: x + ln(attn(x))."),
    ("check_block_forward", "no_mlp_residual", block_no_mlp_residual,
     "Returned mlp(ln2(x)) without adding it to the stream (no residual around the MLP)."),
]
