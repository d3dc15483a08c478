"""experiments/bench.py: the optimizer benchmark end to end at its smoke size, and its flags."""
import pytest
import torch


def test_bench_smoke_memory_matches_formulas():
    """The benchmark runs end to end, and the optimizer state it measures equals each method's
    formula for the methods defined here and torch's (a stray buffer or a missing state would show)."""
    from experiments import bench
    res = bench.run(bench.SMOKE, torch.device("cpu"), verbose=False)
    assert [(e["model"], e["width"]) for e in res["models"]] == [("mlp", 16), ("cnn", 4)]
    for entry in res["models"]:
        assert entry["methods"]["tnt"]["period"] == entry["methods"]["kfac"]["period"] == 4  # smoke overrides
        for name in ("sgd", "adam", "adamw", "specgd", "muon", "nmd", "signum", "splus", "shampoo", "tnt", "kfac"):
            m = entry["methods"][name]
            assert m["iter_s"] > 0 and m["floor_s"] is not None and m["iter_vs_sgd_plus_floor"] > 0
            # torch keeps Adam's step count as a 0-d float tensor per parameter: a few bytes over.
            assert m["memory_vs_params"] == pytest.approx(m["formula_memory_vs_params"], rel=2e-3), name
    mlp = res["models"][0]
    assert {row["peer"] for row in mlp["peers"]} >= {"torch.optim.Muon (NS bfloat16)", "pytorch_optimizer.SPlus"}
    assert mlp["newton_schulz"]["ns_s"] > 0


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
