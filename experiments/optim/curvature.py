"""The one hook a training loop calls for curvature-based optimizers (TNT, KFAC).

Both methods estimate the Fisher from gradients of the loss at labels *sampled from the model's
own predictive distribution* (the "true" Fisher), not at the data labels. Any training loop gets
that by one call between the forward pass and the usual backward:

    outputs = model(x)
    loss = criterion(outputs, y)
    curvature_step(optimizer, outputs, loss_kind="ce", generator=g)  # no-op for other optimizers
    loss.backward()
    optimizer.step()

An optimizer takes part by defining
    wants_curvature() -> bool            True when the next step refreshes its curvature factors
    update_curvature(grads: dict) -> None
and what its sampled-label gradients are taken with respect to, one of
    curvature_params() -> list[Tensor]   parameters (TNT); grads = {param: gradient}
    curvature_outputs() -> dict[key, GradientEdge]
                                         gradient edges (torch.autograd.graph.get_gradient_edge) of
                                         tensors of the current forward (KFAC: its layer outputs, so
                                         autograd computes no weight gradient); grads = {key: gradient}
grads holds None where the sampled loss does not reach. The sampled backward reuses the forward
graph (retain_graph=True) and never touches p.grad.
"""
from __future__ import annotations

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
    if not outputs.requires_grad:  # without this, KFAC's hooks would have recorded no layer output
        raise ValueError("curvature_step needs the outputs of a forward pass with gradients enabled")
    loss = mean_loss(outputs, sample_labels(outputs, loss_kind, generator), loss_kind)
    optimizer.update_curvature(sampled_gradients(optimizer, loss, retain_graph=True))
    return True


def sampled_gradients(optimizer, loss: torch.Tensor, retain_graph: bool) -> dict:
    """The sampled backward of `loss`: {key: gradient} for the optimizer's curvature_outputs() when
    it has them, else {param: gradient} for its curvature_params() (see the module docstring)."""
    layer_outputs = getattr(optimizer, "curvature_outputs", None)
    targets = layer_outputs() if layer_outputs is not None else {p: p for p in optimizer.curvature_params()}
    if not targets:  # e.g. no layer output recorded in eval mode or without grad
        return {}
    grads = torch.autograd.grad(loss, list(targets.values()), retain_graph=retain_graph, allow_unused=True)
    return dict(zip(targets, grads))
