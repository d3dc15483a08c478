"""Driver for tests/test_output_faults.py (not a test module): runs `paper_repro.main` for a small
stand-in figure 2 in forked children, stops each at a chosen point, and copies the output folder
after each, then repairs it as the next run would (paperfigs.output.recover).

    python tests/fault_driver.py OUT SNAPSHOTS SCENARIOS.json

A scenario is {"seed": S, "signal": "KILL"|"INT"|"TERM"|null, and either "delay": seconds (the
parent sends the signal) or "call": "replace"|"fsync" and "count": k (the child sends it to
its own calling thread just before its k-th call of os.replace / os.fsync, i.e. inside a
write)}. The libraries are imported once here, so each child costs only the figure itself.
Prints one JSON line per scenario: {"status": exit status or -signal, "log": the child's stdout+stderr}.
"""
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import types  # noqa: E402

import experiments.runtime.threads  # noqa: E402,F401
import paper_repro  # noqa: E402
from paperfigs import registry, runner  # noqa: E402
from paperfigs.claims import at_least  # noqa: E402
from paperfigs.output import recover  # noqa: E402


def _stand_in() -> types.ModuleType:
    """Figure 2 replaced by a cheap one (the write path does not depend on the figure): a seeded
    random walk and two claims, one of which depends on the seed."""
    mod = types.ModuleType("fault_fig")

    def compute(mode, seed, device, ctx=None):
        y = np.cumsum(np.random.default_rng(seed).standard_normal(50))
        return {"params": {"n": 50}, "series": {"walk": {"x": np.arange(50), "y": y}},
                "claims": [at_least("ends_up", "the walk ends above 0", y[-1], 0.0),
                           at_least("always", "a claim that holds", 1.0, 0.0)]}

    def plot(result):
        fig, ax = plt.subplots(figsize=(3, 2))
        s = result["series"]["walk"]
        ax.plot(s["x"], s["y"])
        return fig

    mod.compute, mod.plot = compute, plot
    sys.modules["fault_fig"] = mod
    return mod


_stand_in()
_FIGURES = {2: registry.FigureSpec(2, "stand-in", registry.PAPER_A, "fault_fig", 1)}
registry.FIGURES = runner.FIGURES = paper_repro.FIGURES = _FIGURES


def _child(out: str, scenario: dict, log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if scenario.get("call"):
        sig = getattr(signal, "SIG" + scenario["signal"])
        name, target = scenario["call"], scenario["count"]
        real = getattr(os, name)
        calls = [0]

        def hooked(*args):
            calls[0] += 1
            if calls[0] == target:
                # raise_signal delivers to this (the calling) thread: os.kill would let the kernel pick
                # any thread of the process, and on a loaded machine a helper thread could run the
                # handler only after the write (or the whole run) had finished
                signal.raise_signal(sig)
            return real(*args)

        setattr(os, name, hooked)
    rc = paper_repro.main(["--figure", "2", "--quick", "--seed", str(scenario["seed"]), "--out", out])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def main(out: str, snapshots: str, scenarios: list[dict]) -> None:
    # The scenarios stand for a run in a terminal, where Ctrl-C raises KeyboardInterrupt. A process
    # started in the background by a shell without job control (`pytest ... &`, nohup, some CI
    # runners) inherits SIGINT ignored, and Python then installs no handler: a paper_repro run there
    # rightly ignores SIGINT, so scenario "INT" would test nothing and exit 0. Restore the terminal's.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for i, scenario in enumerate(scenarios):
        log = os.path.join(snapshots, f"{i}.log")
        pid = os.fork()
        if pid == 0:
            try:
                _child(out, scenario, log)
            finally:
                os._exit(99)
        if "delay" in scenario:
            time.sleep(scenario["delay"])
            try:
                os.kill(pid, getattr(signal, "SIG" + scenario["signal"]))
            except ProcessLookupError:  # it finished first
                pass
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        shutil.copytree(out, os.path.join(snapshots, str(i)))
        recover(out)
        print(json.dumps({"status": code, "log": Path(log).read_text()}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], json.loads(Path(sys.argv[3]).read_text()))
