"""experiments/bench.py: the optimizer benchmark end to end at its smoke size, and its flags."""
import statistics
from dataclasses import replace

import pytest
import torch


ROUNDS = 3


@pytest.fixture(scope="module")
def smoke():
    """One benchmark run at the smoke size with three rounds (a few seconds)."""
    from experiments import bench
    return bench.run(replace(bench.SMOKE, rounds=ROUNDS), torch.device("cpu"), verbose=False)


def test_bench_smoke_memory_matches_formulas(smoke):
    """The benchmark runs end to end, and the optimizer state it measures equals each method's
    formula for the methods defined here and torch's (a stray buffer or a missing state would show)."""
    assert [(e["model"], e["width"]) for e in smoke["models"]] == [("mlp", 16), ("cnn", 4)]
    for entry in smoke["models"]:
        assert entry["methods"]["tnt"]["period"] == entry["methods"]["kfac"]["period"] == 4  # smoke overrides
        for name in ("sgd", "adam", "adamw", "specgd", "muon", "nmd", "signum", "splus", "shampoo", "tnt", "kfac"):
            m = entry["methods"][name]
            assert m["iter_s"] > 0
            # torch keeps Adam's step count as a 0-d float tensor per parameter: a few bytes over.
            assert m["memory_vs_params"] == pytest.approx(m["formula_memory_vs_params"], rel=2e-3), name
    mlp = smoke["models"][0]
    assert {row["peer"] for row in mlp["peers"]} >= {"torch.optim.Muon (NS bfloat16)", "pytorch_optimizer.SPlus"}
    assert mlp["newton_schulz"]["ns_s"] > 0


def test_bench_ratios_are_paired_within_each_round(smoke):
    """Every round gives each of this project's methods one ratio from that round's times alone:
    its iteration / (SGD-m's iteration + its floor, from that round's kernel times). The reported
    ratio is their median, the range their min and max, the verdict the median against the target.
    torch's own optimizers are reference rows: no floor, no ratio, no verdict."""
    from experiments import bench
    for entry in smoke["models"]:
        assert entry["rounds"] == ROUNDS
        kernels = entry["kernel_round_s"]
        assert all(len(v) == ROUNDS and min(v) > 0 for v in kernels.values())
        sgd = entry["methods"]["sgd"]["round_iter_s"]
        for name, m in entry["methods"].items():
            assert len(m["round_iter_s"]) == ROUNDS
            if name in ("sgd", "adam", "adamw"):
                assert m["verdict"] == "reference" and m["floor_s"] is None and m["round_ratios"] is None
                assert m["iter_vs_sgd_plus_floor"] is None
                continue
            ratios, floors = m["round_ratios"], m["round_floor_s"]
            assert len(ratios) == len(floors) == ROUNDS
            assert ratios == pytest.approx([m["round_iter_s"][r] / (sgd[r] + floors[r]) for r in range(ROUNDS)])
            assert m["iter_vs_sgd_plus_floor"] == statistics.median(ratios)
            assert m["iter_vs_sgd_plus_floor_range"] == [min(ratios), max(ratios)]
            assert m["floor_s"] == statistics.median(floors)
            assert m["verdict"] == ("ok" if m["iter_vs_sgd_plus_floor"] <= bench.TARGET_FACTOR else "missed")
        # two floors written out by hand from the same round's kernels (smoke: TNT's T1 = 2, T2 = 4)
        for r in range(ROUNDS):
            t = {k: v[r] for k, v in kernels.items()}
            backward = max(t["forward+backward"] - t["forward"], 0.0)
            assert entry["methods"]["tnt"]["round_floor_s"][r] == pytest.approx(
                t["tnt products"] + (backward + t["tnt statistics"]) / 2 + t["tnt inverses"] / 4)
            assert entry["methods"]["muon"]["round_floor_s"][r] == t["muon products"]
            assert entry["methods"]["nmd"]["round_floor_s"][r] == 0.0


def test_bench_names_a_diverging_method_and_its_model(monkeypatch):
    """A registered method whose loss turns non-finite stops the benchmark with one FloatingPointError
    line naming it and the model, and the CLI exits with that line instead of a traceback."""
    from experiments import bench
    from experiments.optim import registry

    class Blowup(torch.optim.SGD):
        def step(self, closure=None):
            super().step(closure)
            for group in self.param_groups:
                for p in group["params"]:
                    p.data.fill_(float("nan"))

    toy = registry.OptimizerEntry("Blowup", lambda model, lr: Blowup(model.parameters(), lr))
    monkeypatch.setitem(registry.OPTIMIZERS, "blowup", toy)
    monkeypatch.setattr(bench, "OPTIMIZERS", {"sgd": registry.OPTIMIZERS["sgd"], "blowup": toy})
    cfg = replace(bench.SMOKE, overrides={}, cnn_widths=())
    with pytest.raises(FloatingPointError) as e:
        bench.run(cfg, torch.device("cpu"), verbose=False)
    assert str(e.value).startswith(f"MLP width 16: blowup (lr {cfg.lr:g}) diverged by iteration ")
    assert "\n" not in str(e.value)

    def diverges(cfg, device, **kwargs):
        raise FloatingPointError("MLP width 16: tnt (lr 1e-05) diverged by iteration 30: loss nan")

    monkeypatch.setattr(bench, "run", diverges)
    with pytest.raises(SystemExit) as e:
        bench.main(["--quick"])
    assert e.value.code == "experiments.bench: MLP width 16: tnt (lr 1e-05) diverged by iteration 30: loss nan"


def test_bench_cli_bad_flags_exit_2_before_running(tmp_path, capsys, monkeypatch):
    """Bad --device / --threads / --json (missing folder, or an existing folder instead of a file)
    are argparse errors (exit 2, one message line), checked before any compute (were a RuntimeError
    traceback, or an IsADirectoryError after the whole run)."""
    from experiments import bench

    def no_compute(*args, **kwargs):
        raise AssertionError("bench.run started before the flags were checked")

    monkeypatch.setattr(bench, "run", no_compute)
    bad = [["--device", "nonsense"], ["--threads", "0"], ["--json", str(tmp_path / "no" / "such" / "b.json")],
           ["--json", str(tmp_path)], ["--rounds", "0"], ["--mlp-widths", "0"], ["--mlp-widths", "--cnn-widths"]]
    if not torch.cuda.is_available():
        bad.append(["--device", "cuda"])
    for flags in bad:
        with pytest.raises(SystemExit) as e:
            bench.main(["--quick", *flags])
        assert e.value.code == 2, flags
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err, flags


def test_bench_cli_picks_models_and_rounds(monkeypatch, capsys):
    """--mlp-widths / --cnn-widths / --rounds replace the mode's models and rounds (an empty list
    drops that model kind), so one model can be timed again with more rounds."""
    from experiments import bench

    seen = []

    def record(cfg, device, **kwargs):
        seen.append(cfg)
        return {"threads": 1, "clock": "stub"}

    monkeypatch.setattr(bench, "run", record)
    bench.main(["--quick", "--cnn-widths", "16", "--mlp-widths", "--rounds", "5"])
    assert (seen[0].mlp_widths, seen[0].cnn_widths, seen[0].rounds) == ((), (16,), 5)
    assert seen[0].batch == bench.QUICK.batch
    bench.main([])
    assert seen[1] == bench.FULL
