"""The deep autoencoder of the second-order optimisation literature (Hinton and Salakhutdinov 2006;
used by KFAC, K-BFGS and TNT): a fully connected encoder to a small linear code and its mirror
image. Paper shape (MNIST): encoder 784-1000-500-250-30, decoder 30-250-500-1000-784. Hidden
units are ReLU (as in the TNT/K-BFGS code; the 2006 paper used logistic units); the code is
linear; the output is one logit per pixel. The output layer is exposed as `head`.
"""
from __future__ import annotations

import torch
from torch import nn

from experiments.models.init import init_linear


class DeepAutoencoder(nn.Module):
    """x: (batch, d) in [0, 1] -> logits (batch, d), d = encoder_sizes[0]; weights drawn from `generator`."""

    def __init__(self, encoder_sizes: tuple[int, ...] = (784, 1000, 500, 250, 30),
                 generator: torch.Generator | None = None):
        super().__init__()
        if len(encoder_sizes) < 2 or any(int(s) < 1 for s in encoder_sizes):
            raise ValueError(f"encoder_sizes needs >= 2 positive widths, got {encoder_sizes}")
        sizes = tuple(int(s) for s in encoder_sizes)
        self.encoder_sizes = sizes
        layers: list[nn.Module] = []
        # Encoder: ReLU after every layer except the one producing the linear code.
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.encoder = nn.Sequential(*layers)
        mirrored = sizes[::-1]
        layers = []
        for a, b in zip(mirrored[:-2], mirrored[1:-1]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.decoder = nn.Sequential(*layers)
        self.head = nn.Linear(mirrored[-2], mirrored[-1])
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                init_linear(m, g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x.flatten(1))))
