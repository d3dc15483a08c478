"""The methods a torch figure compares: a label, the optimizer it builds and its fixed arguments,
plus the user's optimizers from --optimizer (paperfigs.context.ExternalOptimizer).

Muon's AdamW fallback (biases, embeddings and, for registered Muon, the head) runs at a fixed ratio
of Muon's lr, so tuning Muon's lr tunes both on one grid: at Muon's customary 0.02 the fallback is
AdamW's customary 1e-3. "muon_head" (Muon on every matrix including the head) keeps the ratio for
the biases.
"""
from __future__ import annotations

from dataclasses import dataclass, field

MUON_FALLBACK_RATIO = 0.05
VARIANTS = {"muon_head": ("muon", {"head_fallback": False})}
LABELS = {"muon_head": "Muon (incl. head)"}


@dataclass(frozen=True)
class Method:
    name: str                    # label in figures, claims and --lr
    optimizer: str               # registry key or "package.module:Class"
    kwargs: dict = field(default_factory=dict)
    external: bool = False       # a user optimizer (--optimizer)

    def optimizer_kwargs(self, lr: float) -> dict:
        """The run config's optimizer_kwargs at this lr."""
        kw = dict(self.kwargs)
        if self.optimizer == "muon":
            kw["fallback_lr"] = MUON_FALLBACK_RATIO * lr
        return kw


def methods(names, ctx, kwargs: dict | None = None) -> list[Method]:
    """Methods for the figure's labels (registry keys or VARIANTS), then the context's user optimizers.
    kwargs: label -> extra fixed optimizer arguments."""
    kwargs = kwargs or {}
    out = []
    for name in names:
        key, kw = VARIANTS.get(name, (name, {}))
        out.append(Method(name, key, {**kw, **kwargs.get(name, {})}))
    extra = ctx.extra_optimizers if ctx is not None else ()
    out += [Method(o.name, o.target, dict(o.kwargs), external=True) for o in extra]
    return out


def label(name: str) -> str:
    from paperfigs.style import display

    return LABELS.get(name, display(name))
