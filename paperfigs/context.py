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

    def tune(self, specs, overrides: dict[str, float] | None = None):
        """tune_all over `specs` with this context's record settings; `overrides` (method label ->
        lr) replaces lr_overrides where a figure maps them onto its own labels."""
        import sys

        from experiments.tuning import tune_all

        specs = list(specs)
        used = self.lr_overrides if overrides is None else overrides
        unmatched = unmatched_overrides(used, [t.method for t in specs])
        if unmatched:
            # a misspelt --lr would otherwise be dropped without a word while the method it meant
            # is tuned, which can take hours at full scale
            print(f"note: --lr {', '.join(unmatched)}: no method of this figure has that name, so it is "
                  f"not used here; the figure's tuned methods are {', '.join(_user_labels(specs))}",
                  file=sys.stderr)
        return tune_all(self.engine, specs, overrides=used,
                        use_record=self.use_record, write_record=self.write_record,
                        record_checks=self.record_checks)


def _user_labels(specs) -> list[str]:
    """The names --lr accepts for these TuneSpecs: each method, and for a "task|method" label
    (figure 14) its method part (both tasks) before the whole label (one task)."""
    short = [t.method.split("|")[-1] for t in specs]
    return list(dict.fromkeys(short + [t.method for t in specs]))


def unmatched_overrides(overrides: dict, methods: list[str]) -> list[str]:
    """The names among `overrides` (as the figure applies them) that name none of `methods`."""
    return [k for k in overrides if k not in set(methods)]
