"""The deep autoencoder of the second-order-optimisation literature (Hinton and Salakhutdinov 2006;
used by KFAC, K-BFGS and TNT): a fully connected encoder to a small linear code and its mirror image.

Paper shape (MNIST): 784-1000-500-250-30 encoder, 30-250-500-1000-784 decoder, i.e.
`encoder_sizes=(784, 1000, 500, 250, 30)`. Hidden units are ReLU (the choice of the TNT/K-BFGS
code; Hinton and Salakhutdinov used logistic units); the 30-unit code is linear, and the output
is 784 logits, one per pixel, trained with per-pixel binary cross-entropy against pixel
intensities in [0, 1] (loss "bce" of experiments.train, summed over pixels, averaged over images).

    x: (batch, 784) in [0, 1]  ->  logits: (batch, 784)

The output layer is exposed as `head` like the other models of the project.
"""
from __future__ import annotations

import torch
from torch import nn


class DeepAutoencoder(nn.Module):
    def __init__(self, encoder_sizes: tuple[int, ...] = (784, 1000, 500, 250, 30)):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x.flatten(1))))
