"""A torch figure through the engine: the executor and the job count do not change a number (one
process-pool check and one Ray check, both against figure 1's inline smoke run), and a figure
stopped halfway resumes with only the missing runs."""
import json

import pytest

from experiments import engine as engine_module
from experiments.engine import Engine
from paperfigs.context import Context
from paperfigs.runner import run_figure

# Measurements and the environment, not results: everything else must agree exactly.
VOLATILE = ("runtime_s", "versions", "threads")


def _comparable(path):
    result = json.loads(path.read_text())
    for key in VOLATILE:
        result.pop(key, None)
    for row in result["tables"]["checkpoints"].values():
        row.pop("train_s_per_seed")
    return result


def _figure1(tmp_path, name, **engine_kw):
    out = tmp_path / name
    with Engine(store=out / "runs", progress=False, **engine_kw) as engine:
        run_figure(1, mode="smoke", seed=0, device="cpu", out_dir=out, ctx=Context(engine=engine))
        counts = dict(engine.counts)
    return _comparable(out / "fig1.json"), counts


def _inline(smoke_figure):
    """Figure 1 computed inline (the runner's own engine, one job) into a fresh store: its result and
    the number of runs it computed."""
    _, out = smoke_figure(1)
    return _comparable(out / "fig1.json"), len(list((out / "runs").glob("??/*.json")))


def test_figure_1_is_identical_inline_and_in_a_process_pool(tmp_path, smoke_figure):
    inline, computed = _inline(smoke_figure)
    assert computed > 0
    pool, counts = _figure1(tmp_path, "pool", jobs=2)
    assert counts["computed"] == computed
    assert pool == inline


def test_figure_1_is_identical_inline_and_on_ray(tmp_path, smoke_figure):
    ray = pytest.importorskip("ray")
    inline, _ = _inline(smoke_figure)
    try:
        on_ray, _ = _figure1(tmp_path, "ray", jobs=2, executor="ray")
    finally:
        ray.shutdown()
    assert on_ray == inline


def test_a_stopped_figure_resumes_with_only_the_missing_runs(tmp_path, monkeypatch, smoke_figure):
    complete, computed = _inline(smoke_figure)
    real, done, k = engine_module.execute, [], 5

    def stops_after_k(*args, **kw):
        if len(done) == k:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during run k+1
        done.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(engine_module, "execute", stops_after_k)
    with pytest.raises(KeyboardInterrupt):
        _figure1(tmp_path, "stopped", jobs=1)
    monkeypatch.setattr(engine_module, "execute", real)
    assert len(list((tmp_path / "stopped" / "runs").glob("??/*.json"))) == k
    resumed, counts = _figure1(tmp_path, "stopped", jobs=1)
    assert counts["computed"] == computed - k
    assert resumed == complete
    # a rerun, or a re-analysis, computes nothing
    _, again = _figure1(tmp_path, "stopped", jobs=1)
    assert again["computed"] == 0


def test_a_user_optimizer_joins_the_figure_and_an_lr_override_is_marked(tmp_path):
    from paperfigs.context import ExternalOptimizer

    ctx = Context(engine=Engine(store=tmp_path / "runs", progress=False), lr_overrides={"sgd": 0.1},
                  extra_optimizers=(ExternalOptimizer("radam", "torch.optim:RAdam", (("eps", 1e-7),)),))
    with ctx.engine:
        result = run_figure(1, mode="smoke", seed=0, device="cpu", out_dir=tmp_path, ctx=ctx)
    sel = result["params"]["lr_selection"]
    assert sel["sgd"]["source"] == "override" and sel["sgd"]["lr"] == 0.1
    assert sel["radam"]["source"] == "computed" and len(sel["radam"]["grid"]) >= 2
    assert result["params"]["methods"]["radam"] == {"optimizer": "torch.optim:RAdam", "kwargs": {"eps": 1e-7}}
    claim = next(c for c in result["claims"] if c["name"] == "radam_minority_early_above_sgd")
    assert claim["verdict"] in ("holds", "fails", "inconclusive")
    assert {s["method"] for s in result["series"].values()} >= {"radam", "sgd"}
    # the overridden baseline was never tuned: its sensitivity baseline is missing and the table says
    # whose runs are missing (SGD's, not RAdam's, whose selection was computed here)
    missing = result["tables"]["sensitivity"]["radam"]
    assert missing.startswith("not available: the tuning runs of sgd ") and "radam" not in missing


def test_lr_overrides_reach_the_methods_they_name_and_a_name_that_reaches_none_is_reported(tmp_path, capsys):
    """--lr names compare normalised (any case, "Muon (incl. head)" is muon_head, "SGD-m" sgd-m or
    sgd_m); a qualified name (lm|splus, muon@depth4) wins over the plain one for what it names; a
    misspelt name (muonhead) is said, not silently dropped while the method it meant is tuned."""
    from experiments.tuning import TuneSpec
    from paperfigs.context import resolve_overrides

    labels = ["sgd", "muon", "muon_head"]
    assert resolve_overrides({"muon": 1, "muonhead": 2}, labels) == ({"muon": 1.0}, ["muonhead"])
    assert resolve_overrides({"MUON_HEAD": 3}, labels) == ({"muon_head": 3.0}, [])
    f14 = ["lm|Muon", "lm|Muon (incl. head)", "image|Muon", "image|SPlus"]
    assert resolve_overrides({"muon": 1, "lm|muon": 2, "muon_head": 3, "lm|splus": 4}, f14) == (
        {"lm|Muon": 2.0, "lm|Muon (incl. head)": 3.0, "image|Muon": 1.0}, ["lm|splus"])
    f6 = ["muon@depth2", "muon@depth4", "nmd@depth2"]
    assert resolve_overrides({"muon": 1, "muon@depth4": 2}, f6) == ({"muon@depth2": 1.0, "muon@depth4": 2.0}, [])
    assert resolve_overrides({"SGD-m": 1, "shampoo_grafted": 2}, ["SGD-m", "Shampoo (grafted)", "Shampoo"]) == (
        {"SGD-m": 1.0, "Shampoo (grafted)": 2.0}, [])

    ctx = Context(engine=Engine(store=tmp_path / "runs", progress=False), lr_overrides={"muonhead": 0.01, "sgd": 0.1})
    t = TuneSpec(method="sgd", grid=[0.1], seeds=[1000], make_spec=None, score=None, higher_is_better=True,
                 criterion="c")
    with ctx.engine:
        sel = ctx.tune([t])
    assert sel["sgd"].source == "override"
    err = capsys.readouterr().err
    assert "--lr muonhead" in err and "answer to sgd" in err
    Context(engine=ctx.engine, lr_overrides={"sgd": 0.1}).tune([t])
    assert "--lr" not in capsys.readouterr().err


def test_figure_15_says_it_takes_no_lr_override(tmp_path, capsys):
    from paperfigs.estimate import first_call

    ctx = Context(engine=Engine(store=tmp_path / "runs", progress=False), lr_overrides={"splus": 0.1})
    desc, specs = first_call(15, "smoke", 0, "cpu", ctx)
    assert specs and "figure 15 measures every lr" in capsys.readouterr().err


@pytest.mark.parametrize("number, overrides", [
    (14, {"splus": 0.1, "muon_head": 0.02, "lm|muon": 0.03, "image|Muon": 0.01, "adam": 1e-3, "shampoo": 3e-3}),
    (6, {"muon": 0.1, "nmd": 0.1, "signum@depth2": 0.1, "SIGNUM@depth4": 0.2, "sgd": 0.1, "adam": 1e-3}),
    (11, {"tnt": 3e-4, "kfac": 0.05, "shampoo": 3e-3, "shampoo_grafted": 3e-3, "adam": 3e-3, "sgd-m": 0.02}),
])
def test_figures_with_display_labels_take_the_common_names(number, overrides, tmp_path, capsys):
    """Figure 14 labels its methods "SPlus", "Muon (incl. head)" per task, figure 6 "muon@depth2",
    figure 11 "TNT", "SGD-m": the names of the other figures reach every one of them, so the first
    runs are reporting runs and nothing is reported unmatched (before, --lr muon was dropped without a
    word by figures 6 and 14, and Muon incl. head could not be named)."""
    from paperfigs.estimate import first_call

    ctx = Context(engine=Engine(store=tmp_path / "runs", progress=False), lr_overrides=overrides)
    desc, specs = first_call(number, "smoke", 0, "cpu", ctx)
    assert "reporting" in desc and "--lr" not in capsys.readouterr().err
