"""paperfigs.audit: every committed selection record is rescored from its archived tuning runs with
the figure's current score function, without training. A score edited without re-tuning fails here
(the figure itself would set the record aside and tune again, at the cost of the tuning runs)."""
import pytest

from paperfigs import audit, registry


@pytest.mark.parametrize("scale", ["quick", "full"])
def test_committed_selection_records_reproduce_under_the_current_score_functions(scale):
    read = 0
    for n in sorted(registry.FIGURES):
        a = audit.audit(n, scale)
        stale = [(c["method"], c["stale"][0]) for c in a["records"] if c["status"] == "stale"]
        assert not stale, f"figure {n} ({scale}): stale selection records {stale}"
        read += len(a["records"])
        if scale == "quick" and a["records"]:
            # every quick record has its runs archived, and with all of them from the record the
            # first runs the figure asks for are its reporting runs
            assert {c["status"] for c in a["records"]} == {"ok"}, (n, a["records"])
            assert "reporting" in a["next"], (n, a["next"])
    assert read >= 40   # the audit reached the records (figures 1, 4, 6-9, 11, 12, 14 in quick)


def test_cli(capsys):
    assert audit.main(["--figure", "2"]) == 0
    assert "trains nothing" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        audit.main(["--figure", "99"])
    assert e.value.code == 2 and "no figure 99" in capsys.readouterr().err
