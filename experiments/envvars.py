"""The environment variables the project reads, named and checked in one place.

Needs nothing beyond the standard library: paper_repro.py reads and validates them before torch is
loaded, and worker processes (which inherit the environment) read the same values.
"""
from __future__ import annotations

import os

# A folder of dataset files that the image loaders search first (paper_repro.py --data-root).
DATA_ROOT_ENV = "PAPER_REPRO_DATA_ROOT"

# Overrides the hardware's choice of Muon's ns_dtype="auto" (paper_repro.py --ns-dtype): "float32"
# or "bfloat16"; unset, empty or "auto" leaves the choice to the hardware.
NS_DTYPE_ENV = "PAPER_REPRO_NS_DTYPE"
NS_DTYPE_OVERRIDES = ("float32", "bfloat16")


def forced_ns_dtype() -> str | None:
    """The Newton-Schulz precision PAPER_REPRO_NS_DTYPE forces ("float32" or "bfloat16"), or None
    when the hardware decides. Read at each call; a value that is none of these raises ValueError
    with the variable named."""
    raw = os.environ.get(NS_DTYPE_ENV, "")
    forced = raw.strip().lower()
    if not forced or forced == "auto":
        return None
    if forced not in NS_DTYPE_OVERRIDES:
        raise ValueError(f"{NS_DTYPE_ENV}={raw!r}: expected one of {', '.join(NS_DTYPE_OVERRIDES)} "
                         f"or auto (unset: chosen by the hardware)")
    return forced
