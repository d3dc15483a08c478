"""Image classifiers: an MLP and a small ResNet-style CNN.

Both take x: (B, c, h, w) (the MLP flattens it) and return logits (B, num_classes), expose their
output layer as `model.head` (an nn.Linear, so figures can retrain or probe it and optimizers
can treat it apart), and are built from an explicit torch.Generator so that the same seed gives
the same weights (torch's global generator is never drawn from).
"""
from __future__ import annotations

import torch
from torch import nn

from experiments.models.init import init_conv, init_linear


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
                init_linear(m, g)

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
                init_conv(m, g)
            elif isinstance(m, nn.Linear):
                init_linear(m, g)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
