"""Small models: an MLP and a ResNet-style CNN for images, a tiny causal transformer for text.

The image models take x: (B, c, h, w) (the MLP flattens them) and return logits (B, num_classes).

TinyTransformer (GPT-style, pre-norm): (B, t) int64 ids with t <= T -> (B, t, vocab) next-token
logits. Block l: h = h + Attn(LN(h)); h = h + MLP(LN(h)), causal softmax attention over n_heads
heads and a 4x GELU MLP; final LN then the `head` Linear(d_model, vocab). Token and position
tables are nn.Embedding, the head is not tied to the token embedding, and the query, key, value,
output and MLP projections are separate bias-free 2-D weights: the only hidden matrices for the
optimizers that split them from the rest (experiments/optim/param_groups.py).

Every model exposes its output layer as `model.head` (an nn.Linear), so figures can retrain or
probe it and optimizers can treat it apart, and is built from an explicit torch.Generator so
that the same seed gives the same weights (torch's global generator is never drawn from).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _init_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """torch's default nn.Linear init (Kaiming-uniform, a = sqrt(5)), drawn from `generator`."""
    bound = 1.0 / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        if layer.bias is not None:
            layer.bias.uniform_(-bound, bound, generator=generator)


def _init_conv(conv: nn.Conv2d, generator: torch.Generator) -> None:
    """He-normal init (fan-out, ReLU gain) as in torchvision's ResNets, drawn from `generator`."""
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    with torch.no_grad():
        conv.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=generator)
        if conv.bias is not None:
            conv.bias.zero_()


class MLP(nn.Module):
    """depth linear layers: in_dim -> width -> ... -> width -> num_classes, ReLU between.

    depth = 1 is a linear (softmax-regression) model. `body` holds the hidden layers, `head` the
    last Linear; `features(x)` is the input of the head, (B, width).
    """

    def __init__(self, in_dim: int, num_classes: int, width: int = 256, depth: int = 2, bias: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"MLP needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        dims = [in_dim] + [width] * (depth - 1)
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b, bias=bias), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(dims[-1], num_classes, bias=bias)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _init_linear(m, g)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm and a residual; a 1x1 conv shortcut when shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetCNN(nn.Module):
    """A small ResNet: 3x3 stem (width) -> stages of BasicBlocks -> global average pool -> head.

    Stage s has width * 2^s channels and `blocks[s]` blocks; every stage after the first halves
    the resolution. Defaults (width 16, blocks (1, 1, 1)) train on 28x28 images on a CPU.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, blocks: tuple[int, ...] = (1, 1, 1),
                 generator: torch.Generator | None = None):
        super().__init__()
        if width < 1 or not blocks or min(blocks) < 1:
            raise ValueError(f"ResNetCNN needs width >= 1 and blocks >= 1 per stage, got {width}, {blocks}")
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, c = [], width
        for s, n in enumerate(blocks):
            c_out = width * 2 ** s
            for i in range(n):
                stages.append(BasicBlock(c, c_out, stride=2 if (s > 0 and i == 0) else 1))
                c = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _init_conv(m, g)
            elif isinstance(m, nn.Linear):
                _init_linear(m, g)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


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
