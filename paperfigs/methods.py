"""The methods a torch figure compares: a label, the optimizer it builds and its fixed arguments,
plus the user's optimizers from --optimizer (paperfigs.context.ExternalOptimizer).

Muon's AdamW fallback (biases, embeddings and, for registered Muon, the head) runs at a fixed ratio
of Muon's lr, so tuning Muon's lr tunes both on one grid: at Muon's customary 0.02 the fallback is
AdamW's customary 1e-3. "muon_head" (Muon on every matrix including the head) keeps the ratio for
the biases. A figure may tie another matrix method's fallback (NMD, Signum) the same way with its
own ratio (Method.fallback_ratio; figure 6).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from paperfigs.context import check_user_optimizer_names

MUON_FALLBACK_RATIO = 0.05
VARIANTS = {"muon_head": ("muon", {"head_fallback": False})}
LABELS = {"muon_head": "Muon (incl. head)"}


@dataclass(frozen=True)
class Method:
    name: str                    # label in figures, claims and --lr
    optimizer: str               # registry key or "package.module:Class"
    center: float | None = None  # lr grid centre, for figures that tune every method on one rule
    kwargs: dict = field(default_factory=dict)
    external: bool = False       # a user optimizer (--optimizer)
    # AdamW fallback lr / the method's lr; None: MUON_FALLBACK_RATIO for Muon, and no fallback_lr
    # (the registry's fixed 1e-3) for every other method
    fallback_ratio: float | None = None

    def optimizer_kwargs(self, lr: float) -> dict:
        """The run config's optimizer_kwargs at this lr."""
        kw = dict(self.kwargs)
        ratio = self.fallback_ratio
        if ratio is None and self.optimizer == "muon":
            ratio = MUON_FALLBACK_RATIO
        if ratio is not None:
            kw["fallback_lr"] = ratio * lr
        return kw


def with_extras(methods: list[Method], ctx, center: float | None = None) -> list[Method]:
    """The figure's methods plus the context's user optimizers (--optimizer; lr grid centred on
    `center`); a user optimizer may not take the name of one of the figure's own methods, compared
    as --lr compares names ("adam" would share Adam's --lr)."""
    extra = ctx.extra_optimizers if ctx is not None else ()
    check_user_optimizer_names(extra, [m.name for m in methods])
    return list(methods) + [Method(o.name, o.target, center, dict(o.kwargs), external=True) for o in extra]


def methods(names, ctx, kwargs: dict | None = None) -> list[Method]:
    """Methods for the figure's labels (registry keys or VARIANTS), then the context's user optimizers.
    kwargs: label -> extra fixed optimizer arguments."""
    kwargs = kwargs or {}
    own = []
    for name in names:
        key, kw = VARIANTS.get(name, (name, {}))
        own.append(Method(name, key, kwargs={**kw, **kwargs.get(name, {})}))
    return with_extras(own, ctx)


def claimed_of(ms: list[Method], claimed) -> list[str]:
    """The figure's claimed methods present, and every user optimizer (claimed like them)."""
    return [m.name for m in ms if m.name in claimed or m.external]


def label(name: str) -> str:
    from paperfigs.style import display

    return LABELS.get(name, display(name))
