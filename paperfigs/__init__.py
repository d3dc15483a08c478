"""Figure registry and figure code for the three reproduced papers.

Each figure lives in its own module ``paperfigs/figNN_*.py`` exposing

    compute(mode: str, seed: int, device: str) -> dict
        mode is "full", "quick" or "smoke" (smoke: seconds, for the tests only).
        Returns {"params": {...}, "series": {label: {"x": [...], "y": [...]}},
                 "claims": [Claim, ...]} and optionally "tables": {...}, "notes": [...].
    plot(result: dict) -> matplotlib.figure.Figure
        Draws from the saved JSON alone, so a figure can be re-drawn without recomputing.

`paperfigs.registry.FIGURES` maps numbers to specs; `paperfigs.runner.run_figure` times,
saves and summarises a figure.
"""
