"""What a figure's `compute` receives besides mode, seed and device: how to run, and what to add.

    def compute(mode: str, seed: int, device: str, ctx: Context | None = None) -> dict:
        ctx = ctx or Context()
        results = ctx.engine.run([RunSpec(...), ...])
        selections = ctx.tune([TuneSpec(...), ...])      # lr overrides and the record applied

`extra_optimizers` are user optimizers given as `--optimizer NAME=package.module:Class[:JSON]`:
every torch figure adds them to its methods, tunes them with the same protocol and judges them
with the same claims. In a run config such an optimizer is named by its target
("package.module:Class") with its keyword arguments, so a worker process can build it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from experiments.engine import Engine


@dataclass(frozen=True)
class ExternalOptimizer:
    name: str          # the label in figures and claims
    target: str        # "package.module:Class", a torch.optim.Optimizer subclass
    kwargs: tuple = () # ((key, value), ...) passed to the class besides params and lr


@dataclass
class Context:
    engine: Engine = field(default_factory=Engine)
    lr_overrides: dict[str, float] = field(default_factory=dict)   # method label -> lr (exploration)
    extra_optimizers: tuple[ExternalOptimizer, ...] = ()
    use_record: bool = True        # read committed selections whose key matches
    write_record: bool = False     # write this run's computed selections into the record
    record_checks: list | None = None  # when a list: one entry per record read (tuning.check_record)

    def tune(self, specs):
        """tune_all over `specs` with this context's record settings, and the --lr overrides applied
        to the methods they name (resolve_overrides)."""
        import sys

        from experiments.tuning import tune_all

        specs = list(specs)
        applied, unmatched = resolve_overrides(self.lr_overrides, [t.method for t in specs])
        if unmatched:
            # a misspelt --lr would otherwise be dropped without a word while the method it meant
            # is tuned, which can take hours at full scale
            names = dict.fromkeys(n for t in specs for n in sorted(_forms(t.method), key=len))
            print(f"note: --lr {', '.join(unmatched)}: no method of this figure has that name, so it is "
                  f"not used here; its methods answer to {', '.join(names)}", file=sys.stderr)
        return tune_all(self.engine, specs, overrides=applied,
                        use_record=self.use_record, write_record=self.write_record,
                        record_checks=self.record_checks)


# a display label's normalised form -> the name the figures' JSON and the other figures use
_ALIASES = {"muon_incl_head": "muon_head"}


def normalise_name(name: str) -> str:
    """A method name as --lr and the clash checks compare it: any case, runs of other characters
    as one "_" ("SGD-m" -> "sgd_m"), "Muon (incl. head)" -> "muon_head"."""
    n = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return _ALIASES.get(n, n)


def _parts(name: str) -> tuple[str, str, str]:
    """(task, method, group) of a label or an --lr name, normalised: "lm|Muon" -> ("lm", "muon", ""),
    "muon@depth2" -> ("", "muon", "depth2"), "SGD-m" -> ("", "sgd_m", "")."""
    task, _, rest = name.rpartition("|")
    method, _, group = rest.partition("@")
    return normalise_name(task), normalise_name(method), normalise_name(group)


def lr_name_ok(name: str) -> bool:
    """Whether `name` reads as an --lr name: a method, or task|method, or method@group, each part
    that is there with at least one letter or digit."""
    task, bar, rest = name.rpartition("|")
    method, at, group = rest.partition("@")
    return all(normalise_name(part) for part, there in ((task, bar), (method, True), (group, at)) if there)


def clashing_names(names, taken) -> list[str]:
    """The names in `names` equal, as --lr compares names (normalise_name), to one in `taken` or to
    an earlier one in `names`: such a pair would share one --lr."""
    seen, out = {normalise_name(t) for t in taken}, []
    for n in names:
        key = normalise_name(n)
        if key in seen:
            out.append(n)
        seen.add(key)
    return out


def check_user_optimizer_names(extra, own) -> None:
    """ValueError naming the user optimizers (`extra`, ExternalOptimizers) whose names clash with a
    figure's own method names (`own`) or with each other (see clashing_names)."""
    clash = clashing_names([o.name for o in extra], own)
    if clash:
        raise ValueError(f"--optimizer name(s) {clash} clash with the figure's own methods or each other")


def _join(task: str, method: str, group: str) -> str:
    return (f"{task}|" if task else "") + method + (f"@{group}" if group else "")


def _forms(label: str) -> set[str]:
    """The names under which --lr reaches the tuned method `label`: its method name normalised
    (_parts), and with its qualifier where the label has one: figure 14's "lm|Muon" also answers
    to lm|muon, figure 6's "muon@depth2" to muon@depth2."""
    task, method, group = _parts(label)
    return {method, _join(task, method, ""), _join("", method, group)}


def resolve_overrides(overrides: dict[str, float], labels: list[str]) -> tuple[dict[str, float], list[str]]:
    """({label: lr} for the tuned methods `labels` that the user's --lr names reach, [the user's
    names that reach none]). Names compare normalised (see _forms); a qualified name (lm|splus,
    muon@depth4) wins over the plain one (splus, muon) for the labels it names."""
    applied, used = {}, set()
    for label in labels:
        forms = _forms(label)
        hits = [k for k in overrides if _join(*_parts(k)) in forms]
        if hits:
            best = max(hits, key=lambda k: ("|" in k) + ("@" in k))
            applied[label] = float(overrides[best])
            used.update(hits)
    return applied, [k for k in overrides if k not in used]
