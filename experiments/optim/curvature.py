"""The one hook a training loop calls for curvature-based optimizers (TNT, KFAC).

Both methods estimate the Fisher from gradients of the loss at labels *sampled from the model's
own predictive distribution* (the "true" Fisher), not at the data labels. Any training loop gets
that by one call between the forward pass and the usual backward:

    outputs = model(x)
    loss = criterion(outputs, y)
    curvature_step(optimizer, outputs, loss_kind="ce", generator=g)  # no-op for other optimizers
    loss.backward()
    optimizer.step()

An optimizer takes part by defining three methods:
    wants_curvature() -> bool            True when the next step refreshes its curvature factors
    curvature_params() -> list[Tensor]   parameters whose sampled-label gradients it needs
    update_curvature(grads: dict[Tensor, Tensor | None]) -> None
and optionally
    capturing_curvature()                a context manager active during the sampled backward
                                         (KFAC records layer output gradients in it through hooks)
    curvature_outputs() -> list[GradientEdge]
                                         the gradient edges (torch.autograd.graph.get_gradient_edge)
                                         of the layer outputs of the current forward: when defined,
                                         the sampled loss is differentiated with respect to these
                                         instead of the parameters, so autograd computes no weight
                                         gradient, and update_curvature gets {} (KFAC, whose hooks
                                         capture all it needs; TNT needs the parameter gradients)
The sampled backward reuses the forward graph (retain_graph=True) and never touches p.grad.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

LOSS_KINDS = ("ce", "bce", "mse")


def sample_labels(outputs: torch.Tensor, loss_kind: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one label per output from the model's predictive distribution.

    ce:  outputs (..., C) logits -> integer classes (...) from softmax
    bce: outputs (...) logits -> {0, 1} floats from Bernoulli(sigmoid)
    mse: outputs (...) means -> outputs + N(0, 1)
    """
    out = outputs.detach()
    if not bool(torch.isfinite(out).all()):
        raise FloatingPointError("non-finite model outputs: cannot sample labels (has the run diverged?)")
    if loss_kind == "ce":
        probs = torch.softmax(out.reshape(-1, out.shape[-1]).float(), dim=-1)
        return torch.multinomial(probs, 1, generator=generator).reshape(out.shape[:-1])
    if loss_kind == "bce":
        return torch.bernoulli(torch.sigmoid(out.float()), generator=generator).to(out.dtype)
    if loss_kind == "mse":
        noise = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
        return out + noise
    raise ValueError(f"loss_kind must be one of {LOSS_KINDS}, got {loss_kind!r}")


def mean_loss(outputs: torch.Tensor, labels: torch.Tensor, loss_kind: str) -> torch.Tensor:
    """The batch-mean loss the harness trains with (sum over outputs for bce/mse, per example)."""
    if loss_kind == "ce":
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), labels.reshape(-1))
    if loss_kind == "bce":
        per = F.binary_cross_entropy_with_logits(outputs, labels, reduction="none")
        return per.reshape(per.shape[0], -1).sum(1).mean()
    if loss_kind == "mse":
        per = 0.5 * (outputs - labels) ** 2
        return per.reshape(per.shape[0], -1).sum(1).mean()
    raise ValueError(f"loss_kind must be one of {LOSS_KINDS}, got {loss_kind!r}")


def curvature_step(optimizer, outputs: torch.Tensor, loss_kind: str,
                   generator: torch.Generator | None = None) -> bool:
    """Run the sampled-label backward if `optimizer` wants curvature now; return whether it ran."""
    wants = getattr(optimizer, "wants_curvature", None)
    if wants is None or not wants():
        return False
    if not outputs.requires_grad:  # without this, KFAC's hooks would have recorded nothing to update
        raise ValueError("curvature_step needs the outputs of a forward pass with gradients enabled")
    loss = mean_loss(outputs, sample_labels(outputs, loss_kind, generator), loss_kind)
    optimizer.update_curvature(sampled_gradients(optimizer, loss, retain_graph=True))
    return True


def sampled_gradients(optimizer, loss: torch.Tensor, retain_graph: bool) -> dict:
    """The sampled backward of `loss` inside the optimizer's capturing_curvature(): {param: gradient}
    of its curvature_params() (None for one the loss does not reach), or {} for an optimizer with
    curvature_outputs(), differentiated with respect to those only (see the module docstring)."""
    capture = getattr(optimizer, "capturing_curvature", None)
    layer_outputs = getattr(optimizer, "curvature_outputs", None)
    if layer_outputs is None:
        params = list(optimizer.curvature_params())
        with (capture() if capture is not None else nullcontext()):
            grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
        return dict(zip(params, grads))
    edges = layer_outputs()
    if edges:  # none after a forward in eval mode or without grad: the hooks recorded nothing
        with (capture() if capture is not None else nullcontext()):
            torch.autograd.grad(loss, edges, retain_graph=retain_graph, allow_unused=True)
    return {}
