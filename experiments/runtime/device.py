"""Where torch work runs: the one device resolver (CLI, benchmarks) and the one synchronisation point.

    device = resolve_device("auto")   # torch.device("cuda") when torch sees one, else cpu
    sync_device(device)               # before reading a wall clock around device work
"""
from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; any other torch device string as given.

    Raises ValueError, one line, for a name torch does not know or a CUDA device that is absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r} (cpu, cuda or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device")
    return device


def sync_device(device: torch.device) -> None:
    """Wait for queued CUDA work, so a wall-clock reading covers it (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
