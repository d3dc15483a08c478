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
    # the overridden baseline was never tuned: its sensitivity baseline is missing and says so
    assert "not available" in result["tables"]["sensitivity"]["radam"]
