"""A tiny causal transformer for next-token prediction (figures 9, 13 and 14).

TinyTransformer (GPT-style, pre-norm): (B, t) int64 ids with t <= T -> (B, t, vocab) next-token
logits. Block l: h = h + Attn(LN(h)); h = h + MLP(LN(h)), causal softmax attention over n_heads
heads and a 4x GELU MLP; final LN then the `head` Linear(d_model, vocab). Token and position
tables are nn.Embedding, the head is not tied to the token embedding, and the query, key, value,
output and MLP projections are separate bias-free 2-D weights: the only hidden matrices for the
optimizers that split them from the rest (experiments/optim/param_groups.py). Weights are drawn
from an explicit torch.Generator (GPT-2 style N(0, 0.02)).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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

    def __init__(self, vocab: int, d_model: int = 128, n_layers: int = 2, n_heads: int = 4, T: int = 64,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.T = T
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(T, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self._init(n_layers, generator if generator is not None else torch.Generator().manual_seed(0))

    @torch.no_grad()
    def _init(self, n_layers: int, g: torch.Generator) -> None:
        # GPT-2 style: N(0, 0.02) everywhere, residual output projections shrunk by 1/sqrt(2 L)
        # so the residual stream's scale does not grow with depth.
        residual_out = {id(w) for b in self.blocks for w in (b.attn.proj.weight, b.out.weight)}
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                std = 0.02 / math.sqrt(2 * n_layers) if id(m.weight) in residual_out else 0.02
                m.weight.normal_(0.0, std, generator=g)

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
