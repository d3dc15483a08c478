"""paperfigs.audit: every committed selection record is rescored from its archived tuning runs with
the figure's current score function, without training. A score edited without re-tuning fails here
(the figure itself would set the record aside and tune again, at the cost of the tuning runs)."""
import pytest

from paperfigs import audit, registry


# Full figures whose every selection has a committed record, per kind of machine (Muon's records
# differ by its Newton-Schulz precision): on a fresh clone they train their reporting runs only,
# which is what keeps them near the hour. A record deleted or keyed away by a settings change would
# otherwise pass unnoticed here: the figure would just tune again, for hours (figure 1's float32
# Muon tuning: 60 runs, about 4 h with --jobs 2 on 2026-12-06).
FULL_RECORDED = {"bfloat16": {1, 4, 6, 7, 8, 9, 11, 12, 14},
                 "float32": {1, 4, 6, 7, 8, 9, 11, 12, 14}}


@pytest.mark.parametrize("scale", ["quick", "full"])
@pytest.mark.parametrize("ns_dtype", ["bfloat16", "float32"])
def test_committed_selection_records_reproduce_under_the_current_score_functions(scale, ns_dtype, muon_key_numerics):
    muon_key_numerics(ns_dtype)  # each kind of machine reads its own Muon records: audit both
    read = 0
    for n in sorted(registry.FIGURES):
        a = audit.audit(n, scale)
        stale = [(c["method"], c["stale"][0]) for c in a["records"] if c["status"] == "stale"]
        assert not stale, f"figure {n} ({scale}): stale selection records {stale}"
        read += len(a["records"])
        if scale == "full":
            recorded = "reporting" in a["next"]
            assert recorded == (n in FULL_RECORDED[ns_dtype]), (
                f"figure {n} (full, {ns_dtype}): first runs are {a['next']!r} ({a['next_runs']}); "
                f"expected {'reporting runs' if n in FULL_RECORDED[ns_dtype] else 'no full records'}")
        if scale == "quick" and a["records"]:
            # every quick record has its runs archived, and with all of them from the record the
            # first runs the figure asks for are its reporting runs (on either kind of machine)
            assert {c["status"] for c in a["records"]} == {"ok"}, (n, a["records"])
            assert "reporting" in a["next"], (n, a["next"])
    assert read >= 40   # the audit reached the records (figures 1, 4, 6-9, 11, 12, 14 in quick)


def test_cli(capsys):
    assert audit.main(["--figure", "2"]) == 0
    assert "trains nothing" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        audit.main(["--figure", "99"])
    assert e.value.code == 2 and "no figure 99" in capsys.readouterr().err


def _records_copy(tmp_path, monkeypatch):
    import shutil

    from experiments import tuning

    rd = tmp_path / "selections"
    shutil.copytree(tuning.RECORD_DIR, rd)
    monkeypatch.setattr(tuning, "RECORD_DIR", rd)
    return rd


def test_recompute_checks_a_record_without_an_archive_and_finds_a_wrong_score(tmp_path, monkeypatch):
    """A record whose archive is gone is unchecked; --recompute trains its tuning runs and checks it
    (ok), and a recorded score that its run does not give is then found stale. The store keeps the
    recomputed runs, so a second audit on it trains nothing."""
    import json

    rd = _records_copy(tmp_path, monkeypatch)
    first = audit.audit(4, "quick")["records"][0]
    key, n = first["tuning_key"], first["runs"]
    (rd / "runs" / f"{key}.json.gz").unlink()
    status = {c["tuning_key"]: c["status"] for c in audit.audit(4, "quick")["records"]}
    assert status[key] == "unchecked" and set(status.values()) == {"ok", "unchecked"}

    store = tmp_path / "store"
    a = audit.audit(4, "quick", store=store, recompute=True)
    assert a["recomputed"] == n
    assert {c["status"] for c in a["records"]} == {"ok"}
    again = audit.audit(4, "quick", store=store, recompute=True)
    assert again["recomputed"] == 0 and {c["status"] for c in again["records"]} == {"ok"}

    # a recorded score its (re-trained) run does not give, with the same selection: what another
    # CPU's rounding does; `differs`, not a failure
    path = rd / f"{key}.json"
    original = json.loads(path.read_text())
    rec = json.loads(path.read_text())
    lr = next(k for k, v in rec["scores"].items() if v[0] is not None)
    rec["scores"][lr][0] += 0.01
    path.write_text(json.dumps(rec))
    got = {c["tuning_key"]: c for c in audit.audit(4, "quick", store=store)["records"]}
    assert got[key]["status"] == "differs" and abs(got[key]["max_diff"] - 0.01) < 1e-9
    assert got[key]["lr_now"] == got[key]["lr"] == original["lr"]
    assert audit.main(["--figure", "4", "--store", str(store)]) == 0

    # a record whose scores select another lr than its runs do: stale, exit status 1
    rec = json.loads(path.read_text())
    other = next(k for k, v in rec["scores"].items() if float(k) != rec["lr"] and all(x is not None for x in v))
    sign = 1.0 if rec["higher_is_better"] else -1.0
    rec["scores"][other] = [x + sign * 1e3 for x in rec["scores"][other]]
    rec["mean_scores"][other] += sign * 1e3
    rec["lr"] = float(other)
    path.write_text(json.dumps(rec))
    stale = [c for c in audit.audit(4, "quick", store=store)["records"] if c["status"] == "stale"]
    assert [c["tuning_key"] for c in stale] == [key] and stale[0]["lr_now"] == original["lr"]
    assert audit.main(["--figure", "4", "--store", str(store)]) == 1

    # the same score edit with the record's runs read from its archive (the machine that recorded
    # them): stale even though the selection is unchanged, since only the score function can differ
    key2 = next(c["tuning_key"] for c in audit.audit(4, "quick")["records"] if c["tuning_key"] != key)
    path2 = rd / f"{key2}.json"
    rec = json.loads(path2.read_text())
    lr = next(k for k, v in rec["scores"].items() if v[0] is not None)
    rec["scores"][lr][0] += 0.01
    path2.write_text(json.dumps(rec))
    got = {c["tuning_key"]: c for c in audit.audit(4, "quick")["records"]}
    assert got[key2]["archived"] == got[key2]["runs"]
    assert got[key2]["status"] == "stale" and got[key2]["lr_now"] == got[key2]["lr"]
