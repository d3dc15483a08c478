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
        from experiments.tuning import tune_all

        return tune_all(self.engine, specs, overrides=self.lr_overrides if overrides is None else overrides,
                        use_record=self.use_record, write_record=self.write_record,
                        record_checks=self.record_checks)
