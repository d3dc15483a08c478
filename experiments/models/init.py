"""Seeded weight initialisation shared by the project's models: every draw comes from an explicit
torch.Generator, never from torch's global one, so the same seed gives the same weights."""
from __future__ import annotations

import math

import torch
from torch import nn


def init_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """torch's default nn.Linear init (Kaiming-uniform, a = sqrt(5)), drawn from `generator`."""
    bound = 1.0 / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        if layer.bias is not None:
            layer.bias.uniform_(-bound, bound, generator=generator)


def init_conv(conv: nn.Conv2d, generator: torch.Generator) -> None:
    """He-normal init (fan-out, ReLU gain) as in torchvision's ResNets, drawn from `generator`."""
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    with torch.no_grad():
        conv.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=generator)
        if conv.bias is not None:
            conv.bias.zero_()
