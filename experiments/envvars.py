"""The environment variables the project reads, named and checked in one place.

Needs nothing beyond the standard library: paper_repro.py reads and validates them before torch is
loaded, and worker processes (which inherit the environment) read the same values.
"""
from __future__ import annotations

import os
import sys

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


# The CPU kernels torch computes with (paper_repro.py --cpu-kernels, paperfigs.audit --cpu-kernels).
# "native" leaves torch's choice (the widest instruction set the CPU has); "avx2" makes an x86 CPU
# with AVX-512 compute as a CPU with AVX2 and without AVX-512 or native bfloat16 does: torch's own
# kernels (ATen), oneDNN's (convolutions, some matrix products) and MKL's at AVX2, and Muon's
# Newton-Schulz in float32. Runs then give that kind of CPU's numbers bit for bit (checked against
# runs recorded on one: tests/test_cpu_kernels.py). The libraries read these variables once, when
# they load, so they must be set before torch is imported.
CPU_KERNELS = ("native", "avx2")
AVX2_KERNEL_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                   "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def use_cpu_kernels(kind: str) -> None:
    """Compute with `kind`'s kernels (one of CPU_KERNELS) in this process and the workers it starts:
    set the environment, then load torch and check that it took effect. "avx2" also forces float32
    Newton-Schulz (the AVX2 CPU has no native bfloat16). Raises ValueError for an unknown kind or a
    contradicting PAPER_REPRO_NS_DTYPE, and RuntimeError, without touching the environment, when torch
    is already loaded (its libraries read the choice once, when they load), or when torch does not
    compute with AVX2 kernels afterwards (a CPU without AVX2)."""
    if kind not in CPU_KERNELS:
        raise ValueError(f"cpu kernels {kind!r}: expected one of {', '.join(CPU_KERNELS)}")
    if kind == "native":
        return
    if forced_ns_dtype() == "bfloat16":
        raise ValueError(f"avx2 kernels compute as a CPU without native bfloat16, but {NS_DTYPE_ENV}=bfloat16 "
                         "forces bfloat16 Newton-Schulz; unset it or set it to float32")
    if "torch" in sys.modules and any(os.environ.get(k) != v for k, v in AVX2_KERNEL_ENV.items()):
        raise RuntimeError("avx2 kernels must be chosen before torch is loaded (its libraries read the "
                           "choice once); run the command in a fresh process, or set "
                           + " ".join(f"{k}={v}" for k, v in AVX2_KERNEL_ENV.items())
                           + f" {NS_DTYPE_ENV}=float32 in its environment")
    os.environ.update(AVX2_KERNEL_ENV)
    os.environ[NS_DTYPE_ENV] = "float32"
    import torch
    got = torch.backends.cpu.get_cpu_capability()
    if got != "AVX2":
        raise RuntimeError(f"avx2 kernels asked for, but torch computes with {got} kernels: this CPU has no AVX2")


def cpu_kernels_label() -> str | None:
    """The CPU kernels torch computes with in this process, for provenance (run records, figN.json):
    torch's capability (e.g. AVX512, AVX2), with "(forced)" where the environment chose it; None
    when torch is not loaded."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    label = torch.backends.cpu.get_cpu_capability()
    return label + " (forced)" if os.environ.get("ATEN_CPU_CAPABILITY") else label
