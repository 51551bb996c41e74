"""The device/precision choice is one small function; here it is given every kind of machine."""
import pytest
import torch

from kqvlib import GPT
from kqvlib.precision import maybe_compile, plan, plan_here
from kqvlib.recipes import gpu_recipe, notebook_cpu_recipe, recipe_for


def test_cuda_with_bf16_uses_bf16_autocast_without_a_scaler():
    p = plan("cuda", bf16_supported=True)
    assert (p.dtype, p.scaler, p.recipe, p.compile) == (torch.bfloat16, False, "gpu", True)


def test_cuda_without_bf16_uses_fp16_and_a_grad_scaler():  # a Colab T4
    p = plan("cuda", bf16_supported=False)
    assert (p.dtype, p.scaler, p.recipe) == (torch.float16, True, "gpu")


def test_mps_trains_in_float32_with_fewer_steps():
    p = plan("mps")
    assert (p.dtype, p.scaler, p.recipe, p.compile) == (None, False, "mps", False)
    model, train = recipe_for(p)
    assert (model.n_layer, model.n_head, model.n_embd, model.block_size) == (6, 6, 384, 256)
    assert train.max_steps < 5000 and not train.compile


@pytest.mark.parametrize("bf16", [False, True])
def test_cpu_is_always_float32_and_the_fixed_step_notebook_recipe(bf16):
    p = plan("cpu", bf16_supported=bf16)  # even a CPU with native bf16: the notebook must reproduce
    assert (p.dtype, p.scaler, p.recipe, p.compile) == (None, False, "cpu", False)
    model, train = recipe_for(p)
    ref_model, ref_train = notebook_cpu_recipe()
    assert model == ref_model and train == ref_train
    assert train.time_budget is None and train.optimizer == "adamw" and not train.cpu_bf16


def test_gpu_recipe_is_nanogpts_shakespeare_char():
    model, train = recipe_for(plan("cuda", True))
    assert (model.n_layer, model.n_head, model.n_embd, model.block_size, model.dropout) == (6, 6, 384, 256, 0.2)
    assert (train.max_steps, train.batch_size, train.lr, train.min_lr) == (5000, 64, 1e-3, 1e-4)
    assert train.compile and gpu_recipe()[1].compile


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="tpu"):
        plan("tpu")


def test_plan_here_and_compile_fallback_on_this_machine():
    p = plan_here()
    assert p.device in {"cuda", "mps", "cpu"}
    model = GPT(notebook_cpu_recipe()[0])
    assert maybe_compile(model, torch.device("cpu")) is model  # never compiled on the CPU
