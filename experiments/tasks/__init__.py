"""Tasks of the experiment engine: one module per task, each whole (data, model, training, read-out).

Every task module defines `VERSION` (an int, bumped when its numbers change) and
`run(config: dict) -> dict`, a pure function of its config (see experiments.engine).
"""
