"""kqvlib.induction: the attention-only model, repeated sequences, the training loop's fixed steps, the
phase-change step, and PizzaWorld's split (held-out noun pairs never reach the training data)."""
import random

import pytest
import torch

from kqvlib.induction import (AttnOnly, AttnOnlyConfig, PizzaWorld, loss_by_position, phase_change_step,
                              repeated_tokens, train_steps)
from kqvlib.interpret import ablate_heads, capture_attention, induction_score


def test_repeated_tokens_repeat_with_each_rows_period():
    x = repeated_tokens(50, 30, 7, range(3, 9), generator=torch.Generator().manual_seed(0))
    assert x.shape == (50, 30) and x.dtype == torch.long and int(x.min()) >= 0 and int(x.max()) < 7
    periods = set()
    for row in x:
        p = next(p for p in range(3, 9) if torch.equal(row[p:], row[:-p]))
        periods.add(p)
    assert len(periods) > 1  # not one fixed period
    fixed = repeated_tokens(4, 10, 5, 4)
    assert torch.equal(fixed[:, 4:], fixed[:, :-4])


@pytest.mark.parametrize("bad", [dict(periods=0), dict(periods=30), dict(vocab_size=1), dict(batch=0)])
def test_repeated_tokens_rejects_bad_arguments(bad):
    args = dict(batch=2, length=30, vocab_size=5, periods=4) | bad
    with pytest.raises(ValueError, match="repeated_tokens"):
        repeated_tokens(**args)


def test_attn_only_is_a_sum_of_attention_layers_and_works_with_the_interpret_tools():
    torch.manual_seed(0)
    m = AttnOnly(AttnOnlyConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, d_model=16)).double()
    x = torch.randint(0, 11, (3, 12))
    with torch.no_grad():
        h = m.tok(x) + m.pos(torch.arange(12))
        for attn in m.layers:
            h = h + attn(h)
        assert torch.allclose(m(x), m.unembed(h))
        with capture_attention(m) as w:
            m(x)
        assert len(w) == 2 and w[0].shape == (3, 2, 12, 12)
        before = m(x)
        with ablate_heads(m, [(0, 0), (1, 1)]):
            changed = m(x)
        assert not torch.allclose(changed, before) and torch.equal(m(x), before)
    with pytest.raises(ValueError, match="block_size"):
        m(torch.zeros(1, 13, dtype=torch.long))


def test_train_steps_takes_exactly_the_steps_asked_and_learns():
    torch.manual_seed(0)
    m = AttnOnly(AttnOnlyConfig(vocab_size=8, block_size=16, n_layer=1, n_head=1, d_model=16))
    x = repeated_tokens(16, 17, 8, 2, generator=torch.Generator().manual_seed(0))
    seen = []
    losses = train_steps(m, lambda s: (x[:, :-1], x[:, 1:]), 60, lr=1e-2, after_step=seen.append)
    assert len(losses) == 60 and seen == list(range(60)) and not m.training
    assert losses[-1] < losses[0]
    assert loss_by_position(m, x).shape == (16,)
    with pytest.raises(ValueError, match="steps"):
        train_steps(m, lambda s: (x, x), -1)


def test_phase_change_step_finds_the_drop():
    curve = [3.0] * 200 + [0.5] * 200
    assert abs(phase_change_step(curve, window=20) - 200) <= 10
    with pytest.raises(ValueError, match="phase_change_step"):
        phase_change_step([1.0] * 10, window=20)


def test_induction_score_of_a_hand_built_induction_head():
    T, p = 12, 5
    w = torch.zeros(T, T)
    for t in range(T):
        w[t, t - p + 1 if t >= p else t] = 1.0  # an ideal induction head; before the repeat, itself
    assert induction_score(w, p).item() == 1.0


def test_pizza_world_held_out_pairs_never_appear_in_training_data():
    world = PizzaWorld()
    assert not set(world.train_pairs) & set(world.test_pairs)
    assert len(world.test_pairs) > 0 and len(world.train_pairs) + len(world.test_pairs) == (
        len(world.FOODS) * (len(world.APPLIANCES) + len(world.CONTAINERS)))
    held = set(world.test_pairs)
    rng = random.Random(0)
    for _ in range(20):
        x, y = world.batch(64, world.train_pairs, rng)
        for row in x:
            words = [world.vocab[i] for i in row]
            food = next(w for w in words if w in world.FOODS)
            place = next(w for w in words if w in world.APPLIANCES + world.CONTAINERS)
            assert (food, place) not in held
        assert (y[:, :-1] == -100).all()


def test_pizza_world_answer_is_decided_by_the_predicate():
    world = PizzaWorld()
    x, y = world.batch(200, world.test_pairs, random.Random(1))
    for row, target in zip(x, y[:, -1]):
        words = [world.vocab[i] for i in row]
        pred = words[10:12]
        answer = world.vocab[target]
        assert (answer in world.FOODS) == (pred in world.FOOD_PRED)
        assert answer in words
    assert x.shape[1] == 16
    with pytest.raises(ValueError, match="test_fraction"):
        PizzaWorld(test_fraction=1.0)
