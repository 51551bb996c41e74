"""Induction heads and in-context learning (chapter 15): a tiny attention-only transformer, the data
that makes induction heads form, and a word-level model that learns what "it" refers to.

    AttnOnlyConfig, AttnOnly     token + learned position embeddings, n_layer causal attention layers
                                 (no MLP, no LayerNorm) added to the residual stream, then W_U
    repeated_tokens(B, T, V, ps) (B, T) random blocks, each repeated; a period per row drawn from ps
    train_steps(model, batch, …) a fixed number of AdamW steps → the loss after every step
    loss_by_position(model, x)   mean next-token loss at every position → (T − 1,)
    phase_change_step(losses)    the step where the loss falls fastest (smoothed)
    PizzaWorld                   sentences like "the pizza came out of the oven and it tasted good";
                                 noun pairs held out; the word "it" refers to, decided by the predicate

The attention layers are kqvlib's :class:`~kqvlib.multihead.MultiHeadAttention`, so chapter 14's tools
(:mod:`kqvlib.interpret`: capturing weights, switching heads off, patching) work on these models as is.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from kqvlib._common import require
from kqvlib.multihead import MultiHeadAttention

__all__ = ["AttnOnlyConfig", "AttnOnly", "repeated_tokens", "train_steps", "loss_by_position",
           "phase_change_step", "PizzaWorld"]


@dataclass
class AttnOnlyConfig:
    """Sizes of an attention-only transformer. Built in chapter 15."""
    vocab_size: int = 32
    block_size: int = 64
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64


class AttnOnly(nn.Module):
    """Embeddings, ``n_layer`` causal attention layers each added to the residual stream, unembedding.
    Built in chapter 15.

    forward(idx: (B, T) token ids) → (B, T, vocab_size) logits. With no MLP and no LayerNorm, everything
    a layer writes is a sum of its heads' outputs, which is what makes the circuits easy to read.
    """

    def __init__(self, cfg: AttnOnlyConfig):
        super().__init__()
        require(cfg.n_layer >= 1 and cfg.d_model % cfg.n_head == 0, lambda: (
            f"AttnOnly: need n_layer >= 1 and d_model divisible by n_head, got {cfg}"))
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)  # W_E
        self.pos = nn.Embedding(cfg.block_size, cfg.d_model)  # learned positions
        self.layers = nn.ModuleList(
            MultiHeadAttention(cfg.d_model, cfg.n_head, causal=True, bias=False) for _ in range(cfg.n_layer))
        self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)  # W_U

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        require(idx.dim() == 2 and idx.shape[1] <= self.cfg.block_size, lambda: (
            f"AttnOnly: idx must be (B, T) with T <= block_size={self.cfg.block_size}, got {tuple(idx.shape)}"))
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))  # (B, T, C)
        for attn in self.layers:
            x = x + attn(x)  # (B, T, C): each layer adds what its heads write
        return self.unembed(x)  # (B, T, V)


def repeated_tokens(batch: int, length: int, vocab_size: int, periods: range | int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, length) token ids: each row a random block of p tokens repeated over and over, p drawn
    from ``periods`` for each row (an int: always that period). Built in chapter 15.

    On the first copy nothing can be predicted (loss ≈ ln V); after it, a model that looks back to where
    the current token occurred and copies what came next predicts every token. Because p varies, no
    fixed position "p back" works: the model has to find the earlier occurrence by its content.
    """
    periods = range(periods, periods + 1) if isinstance(periods, int) else periods
    require(batch >= 1 and vocab_size >= 2 and len(periods) > 0 and 1 <= min(periods) and max(periods) < length,
            lambda: (f"repeated_tokens: need batch >= 1, vocab_size >= 2 and periods in 1 … length − 1 = "
                     f"{length - 1}, got {batch}, {vocab_size}, {periods}"))
    p = torch.tensor(list(periods))[torch.randint(0, len(periods), (batch, 1), generator=generator)]  # (B, 1)
    block = torch.randint(0, vocab_size, (batch, length), generator=generator)  # (B, T): first p used
    src = torch.arange(length) % p  # (B, T): position t copies position t mod p
    return block.gather(1, src)  # (B, T)


def train_steps(model: nn.Module, batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]], steps: int,
                lr: float = 1e-3, weight_decay: float = 0.0,
                after_step: Callable[[int], None] | None = None) -> list[float]:
    """Train for exactly ``steps`` AdamW steps; ``batch(step)`` gives (inputs, targets), targets −100
    where no loss is taken; ``after_step(step)``, if given, runs after each step (to take measurements).
    Returns the loss of every step. Built in chapter 15."""
    require(isinstance(steps, int) and steps >= 0, lambda: f"train_steps: steps must be an int >= 0, got {steps!r}")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    losses = []
    for step in range(steps):
        x, y = batch(step)
        logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if after_step is not None:
            model.eval()
            after_step(step)
            model.train()
    model.eval()
    return losses


@torch.no_grad()
def loss_by_position(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """(B, T) token ids → (T − 1,): the mean loss of predicting token t + 1 at position t. Built in chapter 15."""
    require(idx.dim() == 2 and idx.shape[1] >= 2, lambda: f"loss_by_position: idx must be (B, T >= 2), got {tuple(idx.shape)}")
    logits = model(idx[:, :-1])  # (B, T − 1, V)
    loss = F.cross_entropy(logits.transpose(1, 2), idx[:, 1:], reduction="none")  # (B, T − 1)
    return loss.mean(0)


def phase_change_step(losses: list[float] | torch.Tensor, window: int = 20) -> int:
    """The step where the loss curve, smoothed by a centred moving average of ``window`` steps, falls
    fastest (the middle of the drop when induction heads form). Built in chapter 15."""
    x = torch.as_tensor(losses, dtype=torch.float64)
    require(x.dim() == 1 and x.numel() > 2 * window, lambda: (
        f"phase_change_step: need a 1-D curve longer than 2·window = {2 * window}, got {tuple(x.shape)}"))
    smooth = F.avg_pool1d(x[None, None], window, stride=1)[0, 0]  # (N − window + 1,)
    drop = smooth[:-window] - smooth[window:]  # how much it falls over the next `window` steps
    return int(drop.argmax()) + window


class PizzaWorld:
    """Sentences whose "it" is decided by the predicate, and the word the model must answer.
    Built in chapter 15.

    "the pizza came out of the oven and then it tasted good . it means the" → "pizza";
    the same sentence ending "it was preheated" → "oven". Every sentence has 12 words before the
    question and the question is 4 words, so a batch needs no padding. The noun pairs (food, place) are
    split once: ``train_pairs`` make the training sentences, ``test_pairs`` never appear in them.
    """
    FOODS = ["pizza", "bread", "cake", "pie", "soup", "stew", "rice", "pasta", "cookie", "muffin",
             "roast", "curry", "tart", "lasagna", "pudding", "casserole", "bun", "quiche"]
    APPLIANCES = ["oven", "microwave", "toaster", "grill", "stove", "cooker", "fryer", "smoker"]
    CONTAINERS = ["bowl", "pan", "pot", "tray", "dish", "tin", "jar", "box"]
    FOOD_PRED = [["tasted", "good"], ["smelled", "sweet"], ["was", "delicious"], ["got", "eaten"],
                 ["was", "tasty"], ["was", "salty"]]
    APPLIANCE_PRED = [["was", "preheated"], ["switched", "off"], ["was", "unplugged"], ["beeped", "loudly"],
                      ["was", "repaired"]]
    CONTAINER_PRED = [["was", "washed"], ["got", "scrubbed"], ["was", "rinsed"], ["cracked", "open"]]
    TEMPLATES = [  # F: the food, X: the appliance or container, P: the two-word predicate
        "the F came out of the X and then it P",
        "we took the F out of the X and it P",
        "the X held the F for an hour and it P",
    ]
    QUESTION = ". it means the"

    def __init__(self, test_fraction: float = 0.25, seed: int = 0):
        require(0 < test_fraction < 1, lambda: f"PizzaWorld: test_fraction must be in (0, 1), got {test_fraction}")
        words = {w for t in self.TEMPLATES for w in t.split() if w not in "FXP"} | set(self.QUESTION.split())
        words |= set(self.FOODS + self.APPLIANCES + self.CONTAINERS)
        words |= {w for p in self.FOOD_PRED + self.APPLIANCE_PRED + self.CONTAINER_PRED for w in p}
        self.vocab = sorted(words)
        self.stoi = {w: i for i, w in enumerate(self.vocab)}
        pairs = list(itertools.product(self.FOODS, self.APPLIANCES + self.CONTAINERS))
        random.Random(seed).shuffle(pairs)
        n_test = round(len(pairs) * test_fraction)
        self.test_pairs, self.train_pairs = sorted(pairs[:n_test]), sorted(pairs[n_test:])

    def predicates(self, place: str, refers_to_food: bool) -> list[list[str]]:
        """The predicates that make "it" the food, or the place (an appliance's or a container's)."""
        return self.FOOD_PRED if refers_to_food else (
            self.APPLIANCE_PRED if place in self.APPLIANCES else self.CONTAINER_PRED)

    def sentence(self, food: str, place: str, template: int, predicate: list[str]) -> list[str]:
        """The words of one example, question included (the answer is not part of it)."""
        words = []
        for w in self.TEMPLATES[template].split():
            words += {"F": [food], "X": [place], "P": predicate}.get(w, [w])
        return words + self.QUESTION.split()

    def encode(self, words: list[str]) -> torch.Tensor:
        return torch.tensor([self.stoi[w] for w in words])

    def batch(self, n: int, pairs: list[tuple[str, str]], generator: random.Random
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """n random examples from those pairs → inputs (n, T) and targets (n, T): −100 everywhere but at
        the last position, where the target is the noun "it" refers to."""
        xs, ys = [], []
        for _ in range(n):
            food, place = generator.choice(pairs)
            to_food = generator.random() < 0.5
            pred = generator.choice(self.predicates(place, to_food))
            x = self.encode(self.sentence(food, place, generator.randrange(len(self.TEMPLATES)), pred))
            y = torch.full_like(x, -100)
            y[-1] = self.stoi[food if to_food else place]
            xs.append(x)
            ys.append(y)
        return torch.stack(xs), torch.stack(ys)
