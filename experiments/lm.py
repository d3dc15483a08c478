"""A small causal (GPT-style, pre-norm) transformer language model, trainable on a CPU.

    model = TinyTransformer(vocab=1024, d_model=128, n_layers=2, n_heads=4, T=64)
    logits = model(x)      # x: (B, t) int64 ids with t <= T  ->  logits: (B, t, vocab)

Block l: h = h + Attn(LN(h)); h = h + MLP(LN(h)), with causal softmax attention over n_heads
heads of size d_model / n_heads and a 4x GELU MLP; final LN then the `head` Linear(d_model, vocab).

Parameter roles, for optimizers that split hidden matrices from the rest
(experiments/optim/param_groups.py): token and position tables are nn.Embedding, the output
layer is the separate `head` attribute (not tied to the token embedding), and the query, key,
value, output and MLP projections are separate bias-free 2-D nn.Linear weights: the only
"hidden matrices". LayerNorm gains/biases are 1-D (fallback).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        # Separate q/k/v matrices so a spectral method orthogonalises each map on its own.
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, t, d = h.shape
        split = lambda z: z.view(B, t, self.n_heads, d // self.n_heads).transpose(1, 2)  # noqa: E731
        y = F.scaled_dot_product_attention(split(self.q(h)), split(self.k(h)), split(self.v(h)), is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, t, d))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, 4 * d_model, bias=False)
        self.out = nn.Linear(4 * d_model, d_model, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.ln1(h))
        return h + self.out(F.gelu(self.fc(self.ln2(h))))


class TinyTransformer(nn.Module):
    """Causal LM: (B, t) ids -> (B, t, vocab) next-token logits. See the module docstring."""

    def __init__(self, vocab: int, d_model: int = 128, n_layers: int = 2, n_heads: int = 4, T: int = 64):
        super().__init__()
        self.T = T
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(T, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self._init(n_layers)

    def _init(self, n_layers: int) -> None:
        # GPT-2 style: N(0, 0.02) everywhere, residual output projections shrunk by 1/sqrt(2 L)
        # so the residual stream's scale does not grow with depth.
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
        for b in self.blocks:
            for w in (b.attn.proj.weight, b.out.weight):
                nn.init.normal_(w, std=0.02 / math.sqrt(2 * n_layers))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, t) ids -> (B, t, d_model) final-normalised hidden states (the head's input)."""
        if x.shape[1] > self.T:
            raise ValueError(f"sequence length {x.shape[1]} exceeds the model's T={self.T}")
        h = self.tok(x) + self.pos(torch.arange(x.shape[1], device=x.device))
        for b in self.blocks:
            h = b(h)
        return self.ln_f(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
