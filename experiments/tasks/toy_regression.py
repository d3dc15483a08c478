"""A minimal engine task: a linear least-squares model trained by a registry optimizer.

Small enough for tests of the engine (runs in milliseconds) and a template for a new task:

    config = {"optimizer": "sgd", "lr": 0.1, "steps": 20, "seed": 0, "d": 8, "k": 3, "n": 64}

Data and init both come from `seed` through explicit generators; the result is the training
loss curve and a status ("ok" or "diverged").
"""
from __future__ import annotations

import math

import torch

VERSION = 1


def run(config: dict) -> dict:
    from experiments.optim.registry import build_optimizer

    g = torch.Generator().manual_seed(int(config["seed"]))
    d, k, n = int(config.get("d", 8)), int(config.get("k", 3)), int(config.get("n", 64))
    X = torch.randn(n, d, generator=g)
    Y = X @ torch.randn(d, k, generator=g)
    model = torch.nn.Linear(d, k, bias=False)
    with torch.no_grad():
        model.weight.copy_(0.1 * torch.randn(k, d, generator=g))
    opt = build_optimizer(config["optimizer"], model, float(config["lr"]), **dict(config.get("optimizer_kwargs", {})))
    losses, status = [], "ok"
    for _ in range(int(config["steps"])):
        loss = ((model(X) - Y) ** 2).mean()
        value = float(loss.detach())
        if not math.isfinite(value):
            status = "diverged"
            break
        losses.append(value)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"loss": losses, "status": status}
