"""Which parameters a matrix optimizer (Muon, SpecGD, NMD, Signum) updates, and which it hands
to its AdamW fallback. Every figure gets the same rule through `build_optimizer`.

Rule (one place, stated once):
- hidden matrices: parameters with ndim >= 2 (conv kernels (out, in, kh, kw) included; the
  optimizers view them as (out, in*kh*kw));
- fallback: parameters with ndim < 2 (biases, norm scales), every nn.Embedding weight, and the
  output head.
- The head is identified explicitly, not guessed: it is the module the model exposes as
  `model.head` (the project's models in experiments/models/ do). A model
  without a `head` attribute has no head exclusion. When the head is the model's ONLY matrix (a
  linear or softmax-regression model, as in paper A's theory figures) it stays a hidden matrix:
  there the paper applies SpecGD/Muon to that very matrix. `head_fallback=False` keeps the head
  a hidden matrix in every model.
"""
from __future__ import annotations

import torch
from torch import nn


def split_parameters(model: nn.Module, head_fallback: bool = True) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Return (hidden_matrices, fallback), a partition of model.parameters() in model order."""
    params = list(model.parameters())
    fallback_ids = {id(p) for p in params if p.ndim < 2}
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            fallback_ids.add(id(module.weight))
    head = getattr(model, "head", None)
    if head_fallback and isinstance(head, nn.Module):
        head_ids = {id(p) for p in head.parameters()}
        others = [p for p in params if id(p) not in fallback_ids and id(p) not in head_ids]
        if others:
            fallback_ids |= head_ids
    hidden = [p for p in params if id(p) not in fallback_ids]
    fallback = [p for p in params if id(p) in fallback_ids]
    return hidden, fallback


def split_nonstandard(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(hidden_matrices, nonstandard) for SPlus's treatment of a network's input and output layers
    (Frans et al. 2025): nonstandard = the fallback of `split_parameters` (ndim < 2, embeddings),
    `model.head` (even when it is the only other matrix), and the input layer, i.e. the weight of the
    first nn.Linear / nn.Conv*d / nn.Embedding in module order. A model whose only matrices are
    those keeps its first matrix hidden (nothing else to rotate)."""
    hidden, _ = split_parameters(model)
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    head = getattr(model, "head", None)
    odd = {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()
    if layers:
        odd.add(id(layers[0].weight))
    hidden = [p for p in hidden if id(p) not in odd]
    if not hidden and layers and layers[0].weight.ndim >= 2:
        hidden = [layers[0].weight]
    hidden_ids = {id(p) for p in hidden}
    nonstandard = [p for p in model.parameters() if id(p) not in hidden_ids]
    return hidden, nonstandard


def matrix_param_groups(model: nn.Module, fallback_lr: float, fallback_weight_decay: float = 0.0,
                        head_fallback: bool = True) -> list[dict]:
    """Param groups for a MatrixOptimizer: {"matrix": True} for hidden matrices and
    {"matrix": False, "lr": fallback_lr, "weight_decay": fallback_weight_decay} for the rest.
    Empty groups are left out (torch rejects a group without parameters)."""
    hidden, fallback = split_parameters(model, head_fallback=head_fallback)
    groups = []
    if hidden:
        groups.append({"params": hidden, "matrix": True})
    if fallback:
        groups.append({"params": fallback, "matrix": False, "lr": fallback_lr,
                       "weight_decay": fallback_weight_decay})
    if not groups:
        raise ValueError("model has no parameters")
    return groups


def matrix_view(t: torch.Tensor) -> torch.Tensor:
    """(out, ...) -> (out, prod(rest)): how the matrix optimizers see a conv kernel or a matrix; a
    matrix is returned as it is (the optimizers call this for every parameter each step, and on a
    CPU even a no-op reshape costs a dispatch)."""
    return t if t.ndim == 2 else t.reshape(t.shape[0], -1)
