"""paper_repro.py: bad input gives one-line errors, outputs follow figures.md, writes are atomic."""
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import paper_repro
from paperfigs import registry, runner
from paperfigs.claims import at_least, at_most, verdict
from paperfigs.output import atomic_write_json, jsonable, write_claims_md

ROOT = Path(__file__).resolve().parents[1]


def _fake_module(crash: bool = False):
    mod = types.ModuleType("fake_fig")

    def compute(mode, seed, device, ctx=None):
        if crash:
            raise RuntimeError("boom")
        return {
            "params": {"mode_seen": mode, "seed_seen": seed},
            "series": {"a": {"x": [0, 1, 2], "y": [1.0, float("nan"), 3.0]}},
            "claims": [at_least("c1", "y ends above 2", 3.0, 2.0), at_most("c2", "y ends below 2", 3.0, 2.0)],
        }

    def plot(result):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        s = result["series"]["a"]
        ax.plot(s["x"], [v if v is not None else float("nan") for v in s["y"]])
        return fig

    mod.compute, mod.plot = compute, plot
    return mod


@pytest.fixture
def fake_figures(monkeypatch):
    """Figures 98 (works) and 99 (crashes) backed by in-memory modules."""
    monkeypatch.setitem(sys.modules, "fake_fig_ok", _fake_module())
    monkeypatch.setitem(sys.modules, "fake_fig_crash", _fake_module(crash=True))
    figs = {98: registry.FigureSpec(98, "ok", registry.PAPER_A, "fake_fig_ok", 1),
            99: registry.FigureSpec(99, "crash", registry.PAPER_A, "fake_fig_crash", 1)}
    monkeypatch.setattr(registry, "FIGURES", figs)
    monkeypatch.setattr(runner, "FIGURES", figs)
    monkeypatch.setattr(paper_repro, "FIGURES", figs)
    return figs


def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "paper_repro.py"), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def test_list_names_all_fifteen_figures():
    r = _cli("--list")
    assert r.returncode == 0
    for n in range(1, 16):
        assert any(line.split()[0] == str(n) for line in r.stdout.splitlines()[1:])


@pytest.mark.parametrize("args, needle", [
    (["--figure", "99"], "no figure 99"),
    (["--figure", "two"], "must be an integer"),
    (["--figure", "2", "--device", "tpu"], "invalid choice"),
    (["--figure", "2", "--seed", "x"], "invalid int"),
    (["--figure", "1", "--seed", "-1", "--quick"], "--seed must be >= 0"),
    (["--figure", "2", "--quick", "--data-root", "/nonexistent/data"], "is not a folder"),
    ([], "required"),
])
def test_bad_input_is_one_line_error(args, needle):
    r = _cli(*args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args, needle", [
    (["--jobs", "0"], "--jobs must be >= 1"),
    (["--ray-address", "auto"], "--ray-address needs --executor ray"),
    (["--lr", "muon"], "--lr takes METHOD=VALUE"),
    (["--lr", "muon=fast"], "is not a number"),
    (["--lr", "muon=-1"], "positive finite"),
    (["--optimizer", "radam"], "--optimizer takes NAME="),
    (["--optimizer", "x=torch.optim"], "package.module:Class"),
    (["--optimizer", "x=no_such_pkg.mod:Opt"], "cannot import"),
    (["--optimizer", "x=torch.nn:Linear"], "not a torch.optim.Optimizer subclass"),
    (["--optimizer", "x=torch.optim:RAdam:{bad"], "not valid JSON"),
    (["--optimizer", "x=torch.optim:RAdam:[1]"], "must be a JSON object"),
    (["--optimizer", "x=torch.optim:RAdam:{\"lr\": 1}"], "leave both out"),
    (["--optimizer", "muon=torch.optim:RAdam"], "already taken"),
])
def test_bad_run_flags_are_one_line_errors_before_compute(fake_figures, tmp_path, capsys, args, needle):
    assert paper_repro.main(["--figure", "98", "--quick", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "fig98.json").exists()


def test_unwritable_output_folder(fake_figures, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert paper_repro.main(["--figure", "98", "--quick", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot create output folder" in err and "Traceback" not in err


def test_unwritable_run_store_stops_before_compute(fake_figures, tmp_path, capsys):
    (tmp_path / "runs").write_text("a file where the store's folder should be")
    assert paper_repro.main(["--figure", "98", "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot create run store" in err and "Traceback" not in err
    assert not (tmp_path / "fig98.json").exists()


def test_cli_builds_the_context_from_its_flags(fake_figures, tmp_path, monkeypatch):
    seen = {}

    def compute(mode, seed, device, ctx=None):
        seen["ctx"] = ctx
        return _fake_module().compute(mode, seed, device)

    monkeypatch.setattr(sys.modules["fake_fig_ok"], "compute", compute)
    assert paper_repro.main(["--figure", "98", "--quick", "--out", str(tmp_path), "--jobs", "3", "--fresh",
                             "--lr", "muon=0.02", "--optimizer", "radam=torch.optim:RAdam:{\"eps\": 1e-6}",
                             "--record-selections"]) == 0
    ctx = seen["ctx"]
    assert ctx.engine.jobs == 3 and ctx.engine.fresh and ctx.engine.store.root == tmp_path / "runs"
    assert ctx.lr_overrides == {"muon": 0.02} and ctx.write_record and not ctx.use_record
    assert [(o.name, o.target, o.kwargs) for o in ctx.extra_optimizers] == [("radam", "torch.optim:RAdam",
                                                                            (("eps", 1e-6),))]


def test_figure_outputs_follow_the_json_format(fake_figures, tmp_path):
    assert paper_repro.main(["--figure", "98", "--quick", "--seed", "7", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "fig98.json").read_text())
    runner.validate_result(result)
    assert result["mode"] == "quick" and result["seed"] == 7
    assert result["params"] == {"mode_seen": "quick", "seed_seen": 7}
    assert result["series"]["a"]["y"] == [1.0, None, 3.0]  # NaN is stored as null, valid JSON
    assert [c["holds"] for c in result["claims"]] == [True, False]
    assert (tmp_path / "fig98.png").stat().st_size > 0 and (tmp_path / "fig98.pdf").stat().st_size > 0
    claims_md = (tmp_path / "CLAIMS.md").read_text()
    assert "1 of 2 claims hold" in claims_md and "**no**" in claims_md
    # --replot re-draws from the JSON without calling compute
    (tmp_path / "fig98.png").unlink()
    assert paper_repro.main(["--figure", "98", "--replot", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "fig98.png").exists()


def test_all_keeps_going_past_a_crash(fake_figures, tmp_path, capsys):
    assert paper_repro.main(["--all", "--quick", "--out", str(tmp_path)]) == 1
    assert (tmp_path / "fig98.json").exists() and not (tmp_path / "fig99.json").exists()
    assert "figures that crashed: 99" in capsys.readouterr().err


def test_not_implemented_figure_is_refused(monkeypatch, capsys):
    figs = {5: registry.FigureSpec(5, "later", registry.PAPER_A, None, 1)}
    monkeypatch.setattr(paper_repro, "FIGURES", figs)
    assert paper_repro.main(["--figure", "5"]) == 2
    assert "not implemented yet" in capsys.readouterr().err


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary left behind


def test_claim_helpers_never_hold_on_missing_values():
    assert not at_least("n", "s", float("nan"), 0.0).holds
    assert not at_most("n", "s", None, 0.0).holds
    assert at_least("n", "s", 1.0, 1.0).holds and not at_least("n", "s", 0.99, 1.0).holds
    assert verdict("n", "s", True).to_json()["holds"] is True
    assert jsonable({"v": float("inf")}) == {"v": None}


def test_claims_md_survives_a_corrupt_json(tmp_path):
    (tmp_path / "fig1.json").write_text("{not json")
    text = write_claims_md(tmp_path).read_text()
    assert "0 of 0 claims" in text and "Unreadable result files (not counted): fig1.json" in text
