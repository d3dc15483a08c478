"""paper_repro.py: bad input gives one-line errors, outputs follow figures.md, writes are atomic."""
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import paper_repro
from paperfigs import registry, runner
from paperfigs.claims import at_least, at_most, verdict
from experiments.fileio import atomic_write_json, jsonable
from paperfigs.output import claims_table, write_claims_md

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
    """Figures 97, 98 (work) and 99 (crashes) backed by in-memory modules."""
    monkeypatch.setitem(sys.modules, "fake_fig_ok", _fake_module())
    monkeypatch.setitem(sys.modules, "fake_fig_crash", _fake_module(crash=True))
    figs = {97: registry.FigureSpec(97, "ok too", registry.PAPER_A, "fake_fig_ok", 1),
            98: registry.FigureSpec(98, "ok", registry.PAPER_A, "fake_fig_ok", 1),
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
    (["--figure", "1", "--seed", "-1", "--quick"], "--seed must be in 0..2000000000"),
    (["--figure", "1", "--seed", str(2**64), "--quick"], "--seed must be in 0..2000000000"),
    (["--figure", "1", "--seed", "2000000001", "--quick"], "--seed must be in 0..2000000000"),
    (["--figure", "2", "--quick", "--out", ""], "--out must name a folder"),
    (["--figure", "2", "--quick", "--data-root", "/nonexistent/data"], "is not a folder"),
    ([], "required"),
    (["--figure", "2", "--quick", "--scale", "full"], "--quick contradicts --scale full"),
    (["--figure", "2", "--scale", "paper"], "have no paper-scale configuration"),
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
    (["--lr", "lm|=0.1"], "--lr takes METHOD=VALUE"),
    (["--lr", "@depth4=0.1"], "--lr takes METHOD=VALUE"),
    (["--lr", "muon@=0.1"], "--lr takes METHOD=VALUE"),
    (["--lr", "()=0.1"], "--lr takes METHOD=VALUE"),
    (["--lr", "muon=-1"], "positive finite"),
    (["--optimizer", "radam"], "--optimizer takes NAME="),
    (["--optimizer", "x=torch.optim"], "package.module:Class"),
    (["--optimizer", "x=no_such_pkg.mod:Opt"], "cannot import"),
    (["--optimizer", "x=torch.nn:Linear"], "not a torch.optim.Optimizer subclass"),
    (["--optimizer", "x=torch.optim:RAdam:{bad"], "not valid JSON"),
    (["--optimizer", "x=torch.optim:RAdam:[1]"], "must be a JSON object"),
    (["--optimizer", "x=torch.optim:RAdam:{\"lr\": 1}"], "leave both out"),
    (["--optimizer", "muon=torch.optim:RAdam"], "already taken"),
    (["--optimizer", "MUON=torch.optim:RAdam"], "already taken"),
    (["--optimizer", "r.a=torch.optim:RAdam", "--optimizer", "R_A=torch.optim:RAdam"], "already taken"),
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
                             "--lr", "muon=0.02", "--lr", "lm|SPlus=0.1", "--lr", "muon@depth4=0.1",
                             "--lr", "Muon (incl. head)=0.01", "--optimizer", "radam=torch.optim:RAdam:{\"eps\": 1e-6}",
                             "--record-selections"]) == 0
    ctx = seen["ctx"]
    assert ctx.engine.jobs == 3 and ctx.engine.fresh and ctx.engine.store.root == tmp_path / "runs"
    assert ctx.lr_overrides == {"muon": 0.02, "lm|SPlus": 0.1, "muon@depth4": 0.1,
                                "Muon (incl. head)": 0.01} and ctx.write_record and not ctx.use_record
    assert [(o.name, o.target, o.kwargs) for o in ctx.extra_optimizers] == [("radam", "torch.optim:RAdam",
                                                                            (("eps", 1e-6),))]


def test_ns_dtype_flag_sets_the_precision_auto_resolves_to(fake_figures, tmp_path, monkeypatch, capsys):
    from experiments.envvars import NS_DTYPE_ENV
    from experiments.optim.muon import auto_ns_dtype

    monkeypatch.setenv(NS_DTYPE_ENV, "auto")  # restored (unset) after the test
    seen = {}

    def compute(mode, seed, device, ctx=None):
        seen["auto"] = auto_ns_dtype("cpu")[0]
        return _fake_module().compute(mode, seed, device)

    monkeypatch.setattr(sys.modules["fake_fig_ok"], "compute", compute)
    assert paper_repro.main(["--figure", "98", "--quick", "--out", str(tmp_path), "--ns-dtype", "float32"]) == 0
    assert seen["auto"] == torch.float32 and os.environ[NS_DTYPE_ENV] == "float32"
    monkeypatch.setenv(NS_DTYPE_ENV, "fp32")   # a bad value in the environment: one line, nothing run
    assert paper_repro.main(["--figure", "98", "--quick", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert f"{NS_DTYPE_ENV}='fp32'" in err and err.count("\n") == 1 and not (tmp_path / "bad").exists()


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
    assert "1 of 2 claims hold" in claims_md and "| 98 | quick | 7 | c2 | 3 |  | 2 | **fails** |" in claims_md
    # --replot re-draws from the JSON without calling compute
    (tmp_path / "fig98.png").unlink()
    assert paper_repro.main(["--figure", "98", "--replot", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "fig98.png").exists()


def test_all_keeps_going_past_a_crash(fake_figures, tmp_path, capsys):
    assert paper_repro.main(["--all", "--quick", "--out", str(tmp_path)]) == 1
    assert (tmp_path / "fig98.json").exists() and not (tmp_path / "fig99.json").exists()
    assert not (tmp_path / "fig99.png").exists()
    assert "figures that crashed: 99" in capsys.readouterr().err


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
    assert "0 of 0 claims" in text
    assert "- fig1.json is not a valid result (not JSON: Expecting property name" in text


def _run(args, capsys):
    rc = paper_repro.main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_repeated_figure_option_runs_every_figure(fake_figures, tmp_path, capsys):
    rc, out, _ = _run(["--figure", "97", "--figure", "98", "--quick", "--out", str(tmp_path)], capsys)
    assert rc == 0 and "== figure 97" in out and "== figure 98" in out
    assert "2 of 4 claims hold across 2 figure(s)" in (tmp_path / "CLAIMS.md").read_text()


def test_scale_paper_runs_only_figures_with_a_paper_configuration(fake_figures, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.modules["fake_fig_ok"], "CONFIGS", {"paper": None}, raising=False)
    rc, out, _ = _run(["--all", "--scale", "paper", "--out", str(tmp_path)], capsys)
    assert rc == 0 and "skipped: 99" in out and "== figure 98 (paper" in out
    assert json.loads((tmp_path / "fig98.json").read_text())["params"]["mode_seen"] == "paper"
    assert not (tmp_path / "fig99.json").exists()


def test_seed_bound_is_the_runners():
    assert paper_repro.SEED_MAX == runner.SEED_MAX
    with pytest.raises(ValueError, match="seed must be an integer in 0..2000000000"):
        runner.check_seed(2**64)


def test_threads_above_the_core_count_warn(fake_figures, tmp_path, capsys):
    rc, _, err = _run(["--figure", "98", "--quick", "--threads", "1000", "--out", str(tmp_path)], capsys)
    assert rc == 0 and "warning: --threads 1000 is above the" in err
    rc, _, err = _run(["--figure", "98", "--quick", "--threads", "1", "--out", str(tmp_path)], capsys)
    assert rc == 0 and "warning" not in err


def test_ctrl_c_before_any_figure_exits_130_without_traceback(fake_figures, tmp_path, monkeypatch, capsys):
    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(paper_repro, "_output_dir", interrupted)
    rc, _, err = _run(["--figure", "98", "--quick", "--out", str(tmp_path)], capsys)
    assert rc == 130 and err.strip() == "interrupted before any figure was computed; no output was changed"


def test_ctrl_c_while_importing_exits_130_without_traceback(tmp_path):
    """Real SIGINTs to the CLI while it imports numpy/matplotlib/torch (its first seconds). The
    delays count from the moment the CLI has installed its SIGINT handler (`-X importtime` reports
    the import of `argparse`, its first import after that), not from the fork: on a loaded machine a
    fixed delay could land while the interpreter is still starting up (importing `site`, checking
    argv[0]), where a KeyboardInterrupt traceback is Python's, not the CLI's."""
    import signal
    import time

    statuses = []
    for delay in (0.0, 0.5, 1.5):
        # preexec_fn: a run from a terminal. Started in the background without job control (as some
        # CI runners start pytest), the child would inherit SIGINT ignored and rightly ignore it
        p = subprocess.Popen([sys.executable, "-X", "importtime", str(ROOT / "paper_repro.py"), "--figure", "2",
                              "--quick", "--out", str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        head = []
        for line in p.stderr:  # one line as each import ends
            head.append(line)
            if line.rstrip().endswith("| argparse"):
                break
        assert head and head[-1].rstrip().endswith("| argparse"), "the CLI no longer imports argparse first"
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        err = "".join(head) + err
        assert "Traceback" not in err, err
        assert p.returncode in (0, 130), (p.returncode, err[-2000:])  # 0: it finished first
        statuses.append(p.returncode)
    # the first signal comes as the imports begin, seconds before the figure could finish
    assert statuses[0] == 130, statuses


def test_replot_refuses_a_json_of_another_figure(fake_figures, tmp_path, capsys):
    assert paper_repro.main(["--figure", "97", "98", "--quick", "--out", str(tmp_path)]) == 0
    png97 = (tmp_path / "fig97.png").read_bytes()
    (tmp_path / "fig98.json").write_bytes((tmp_path / "fig97.json").read_bytes())
    capsys.readouterr()
    rc, _, err = _run(["--figure", "98", "--replot", "--out", str(tmp_path)], capsys)
    assert rc == 2
    assert err.strip() == ("paper_repro.py: error: fig98.json is not a valid result (it holds figure 97, not "
                           "figure 98); rerun --figure 98")
    assert (tmp_path / "fig97.png").read_bytes() == png97


def _saved(tmp_path, number=98):
    return json.loads((tmp_path / f"fig{number}.json").read_text())


def _edit(result, path):
    """Apply an edit given as (key path, new value, or DELETE) to a copy of `result`."""
    out = json.loads(json.dumps(result))
    *parents, last = path[0]
    node = out
    for key in parents:
        node = node[key]
    if path[1] is DELETE:
        del node[last]
    else:
        node[last] = path[1]
    return json.dumps(out).encode()


DELETE = object()
BAD_FILES = {
    "truncated": (lambda good: good[: len(good) // 2], "not JSON: "),
    "empty": (lambda good: b"", "not JSON: Expecting value at line 1 column 1"),
    "binary": (lambda good: bytes(range(256)), "not UTF-8 text"),
    "list": (lambda good: b"[1]", "a result is a JSON object, got a list"),
    "no series": (lambda good: _edit(json.loads(good), (["series"], DELETE)), "missing key 'series'"),
    "no params": (lambda good: _edit(json.loads(good), (["params"], DELETE)), "missing key 'params'"),
    "figure as text": (lambda good: _edit(json.loads(good), (["figure"], "98")),
                       "figure must be a positive integer, got '98'"),
    "string y": (lambda good: _edit(json.loads(good), (["series", "a", "y"], ["a", "b", "c"])),
                 "series 'a': y must be a list of finite numbers or nulls"),
    "unknown series": (lambda good: _edit(json.loads(good), (["series"], {"b": {"x": [1], "y": [2]}})),
                       "cannot be drawn: KeyError: 'a'"),
    "claim value text": (lambda good: _edit(json.loads(good), (["claims", 0, "value"], "abc")),
                         "claim 'c1': value must be a finite number or null"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_replot_of_a_bad_json_is_one_line(kind, fake_figures, tmp_path, capsys):
    assert paper_repro.main(["--figure", "98", "--quick", "--out", str(tmp_path)]) == 0
    make, reason = BAD_FILES[kind]
    (tmp_path / "fig98.json").write_bytes(make((tmp_path / "fig98.json").read_bytes()))
    capsys.readouterr()
    rc, _, err = _run(["--figure", "98", "--replot", "--out", str(tmp_path)], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("paper_repro.py: error: fig98.json is not a valid result (")
    assert reason in err and err.strip().endswith("; rerun --figure 98")


def test_replot_rebuilds_claims_md(fake_figures, tmp_path):
    assert paper_repro.main(["--figure", "98", "--quick", "--out", str(tmp_path)]) == 0
    result = _saved(tmp_path)
    result["claims"][1].update(holds=True, value=1.0)  # as a rerun with other numbers would give
    (tmp_path / "fig98.json").write_text(json.dumps(result))
    assert paper_repro.main(["--figure", "98", "--replot", "--out", str(tmp_path)]) == 0
    assert "2 of 2 claims hold" in (tmp_path / "CLAIMS.md").read_text()


@pytest.mark.parametrize("junk", [b"[1]\n", None])
def test_a_bad_or_extra_result_file_does_not_break_other_figures(junk, fake_figures, tmp_path, capsys):
    if junk is None:  # a claim whose value is text, in an otherwise valid fig97.json
        assert paper_repro.main(["--figure", "97", "--quick", "--out", str(tmp_path)]) == 0
        bad = _saved(tmp_path, 97)
        bad["claims"][0]["value"] = "abc"
        (tmp_path / "fig97.json").write_text(json.dumps(bad))
        name = "fig97.json"
    else:
        (tmp_path / "fig5.json").write_bytes(junk)
        name = "fig5.json"
    (tmp_path / "fig3_old_backup.json").write_text("{}")  # only fig<N>.json files are results
    (tmp_path / "fig03.json").write_text("{}")
    (tmp_path / "notes").mkdir()  # folders of other tools are left alone
    rc, out, err = _run(["--figure", "98", "--quick", "--out", str(tmp_path)], capsys)
    assert rc == 0 and "wrote" in out and "Traceback" not in err
    text = (tmp_path / "CLAIMS.md").read_text()
    assert "1 of 2 claims hold across 1 figure(s)" in text
    assert f"- {name} is not a valid result (" in text
    assert "backup" not in text and "fig03" not in text


def test_outputs_get_the_umask_mode(fake_figures, tmp_path):
    names = ["fig98.png", "fig98.pdf", "fig98.json", "CLAIMS.md"]
    old = os.umask(0o022)
    try:
        assert paper_repro.main(["--figure", "98", "--quick", "--out", str(tmp_path)]) == 0
        assert {n: (tmp_path / n).stat().st_mode & 0o777 for n in names} == dict.fromkeys(names, 0o644)
        os.umask(0o077)
        assert paper_repro.main(["--figure", "98", "--quick", "--out", str(tmp_path)]) == 0
        assert {n: (tmp_path / n).stat().st_mode & 0o777 for n in names} == dict.fromkeys(names, 0o600)
    finally:
        os.umask(old)


def test_leftovers_of_a_killed_run_are_removed_by_the_next(fake_figures, tmp_path, capsys):
    leftovers = [".fig98.json.abc123.tmp", ".fig4.png.0f0f0f0f.tmp", ".CLAIMS.md.x_y.tmp"]
    kept = [".fig98.json.notes", ".hidden", "fig98.json.tmp"]
    for name in leftovers + kept:
        (tmp_path / name).write_text("partial")
    rc, out, _ = _run(["--figure", "98", "--quick", "--out", str(tmp_path)], capsys)
    assert rc == 0 and "3 temporary file(s) removed" in out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == sorted(kept[:2])


def test_claims_with_interval_and_verdict(tmp_path):
    claim = verdict("n", "s", False, value=0.5, threshold=0.4)
    assert set(claim.to_json()) == {"name", "statement", "value", "threshold", "holds"}  # as before
    from paperfigs.claims import Claim

    open_claim = Claim("c_open", "straddles", 0.5, 0.4, False, ci=(0.3, 0.7), verdict="inconclusive")
    assert open_claim.to_json()["ci"] == [0.3, 0.7] and open_claim.to_json()["verdict"] == "inconclusive"
    result = {"figure": 98, "title": "t", "paper": "p", "mode": "quick", "seed": 0, "params": {},
              "series": {"a": {"x": [0], "y": [1]}}, "runtime_s": 1.0, "versions": {},
              "claims": [open_claim.to_json(),
                         Claim("c_hold", "clears", 0.9, 0.4, True, ci=(0.8, 1.0), verdict="holds").to_json(),
                         at_least("c_plain", "no interval", 1.0, 2.0).to_json()]}
    runner.validate_result(result, 98)
    for bad in ({"verdict": "maybe"}, {"verdict": "holds"}, {"ci": [0.7, 0.3]}, {"ci": [0.3]}, {"ci": "x"},
                {"extra": 1}):
        broken = json.loads(json.dumps(result))
        broken["claims"][0].update(bad)
        with pytest.raises(ValueError, match="claim"):
            runner.validate_result(broken, 98)
    atomic_write_json(tmp_path / "fig98.json", result)
    text = write_claims_md(tmp_path).read_text()
    assert "1 of 3 claims hold across 1 figure(s) (1 inconclusive)" in text
    assert "| 98 | quick | 0 | c_open | 0.5 | [0.3, 0.7] | 0.4 | inconclusive | straddles |" in text
    assert "| c_hold | 0.9 | [0.8, 1] | 0.4 | holds |" in text
    assert "| c_plain | 1 |  | 2 | **fails** |" in text
    table = claims_table(result)
    assert "INCONCLUSIVE c_open: value 0.5 [0.3, 0.7] vs threshold 0.4" in table
    assert "FAILS        c_plain: value 1 vs threshold 2" in table


def test_a_full_disk_keeps_the_previous_set(fake_figures, tmp_path, monkeypatch, capsys):
    import errno

    from paperfigs import output

    assert paper_repro.main(["--figure", "98", "--quick", "--seed", "1", "--out", str(tmp_path)]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}  # runs/ is the run store
    real, calls = output._write_new, []

    def full(path, data):
        calls.append(path)
        if len(calls) == 3:  # the JSON's temporary, after png and pdf were written
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(output, "_write_new", full)
    capsys.readouterr()
    rc, _, err = _run(["--figure", "98", "--quick", "--seed", "2", "--out", str(tmp_path)], capsys)
    assert rc == 1 and "Traceback" not in err
    assert err.splitlines()[0] == (f"figure 98 failed: cannot write figure 98's files in {tmp_path} (No space "
                                   "left on device); its previous files are unchanged")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_list_into_a_closed_pipe_exits_quietly():
    # The reader is gone before the CLI writes (as after `| head -1`): every write fails with EPIPE.
    p = subprocess.Popen([sys.executable, str(ROOT / "paper_repro.py"), "--list"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT)
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=60) == 141 and err == ""


def test_listing_and_a_bad_precision_setting_never_load_torch():
    """The environment variables are named and checked without torch (experiments.envvars), so
    --list and a bad PAPER_REPRO_NS_DTYPE answer at once, as the other input errors do."""
    probe = ("import runpy, sys\n"
             "sys.argv = ['paper_repro.py'] + sys.argv[1:]\n"
             "try:\n"
             "    runpy.run_path('paper_repro.py', run_name='__main__')\n"
             "except SystemExit as e:\n"
             "    print('exit', e.code, 'torch' in sys.modules)\n")
    env = {**os.environ, "PAPER_REPRO_NS_DTYPE": ""}
    out = subprocess.run([sys.executable, "-c", probe, "--list"], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=60)
    assert out.stdout.strip().endswith("exit 0 False"), out.stdout + out.stderr
    env["PAPER_REPRO_NS_DTYPE"] = "fp16"
    out = subprocess.run([sys.executable, "-c", probe, "--figure", "1", "--quick"], capture_output=True,
                         text=True, cwd=ROOT, env=env, timeout=60)
    assert out.stdout.strip() == "exit 2 False", out.stdout + out.stderr
    assert "PAPER_REPRO_NS_DTYPE='fp16'" in out.stderr and out.stderr.count("\n") == 1
