"""Every registered figure in smoke mode through the runner: a valid result with every claim
evaluated, figN.png/.json written, and --replot drawing again from the JSON alone. Figure-specific
checks of the same runs are in the test_fig_*.py files (they share the run: conftest.smoke_figure)."""
import json

import pytest

from paperfigs.registry import FIGURES, datasets
from paperfigs.runner import replot, validate_result


def _needs(number):
    return [pytest.mark.needs_fashion] if "fashion" in datasets(number, "smoke") else []


@pytest.mark.parametrize("number", [pytest.param(n, marks=_needs(n)) for n in FIGURES])
def test_smoke_run_writes_a_valid_result_with_evaluated_claims_and_replots(number, smoke_figure):
    result, out = smoke_figure(number)
    validate_result(result, number)
    saved = json.loads((out / f"fig{number}.json").read_text())
    validate_result(saved, number)
    assert saved["mode"] == "smoke" and saved["params"] == result["params"]
    assert result["claims"], "every figure states at least one claim"
    for c in result["claims"]:
        assert isinstance(c["holds"], bool)
        assert c["value"] is not None, f"claim {c['name']} was not evaluated"
    png = out / f"fig{number}.png"
    assert png.stat().st_size > 0
    png.unlink()
    replot(number, out)  # draws from the JSON alone
    assert png.stat().st_size > 0
