"""Several processes publishing figures into one folder at the same moment lose no update: after
each synchronised round, CLAIMS.md lists every figure with the seed of that round."""
import json
import multiprocessing as mp

from experiments.fileio import json_bytes
from paperfigs.output import publish

WORKERS, ROUNDS = 4, 15


def _result(number: int, seed: int) -> bytes:
    return json_bytes({"figure": number, "title": "t", "paper": "p", "mode": "quick", "seed": seed,
                       "params": {}, "series": {"a": {"x": [0], "y": [seed]}}, "runtime_s": 0.0,
                       "versions": {}, "claims": [{"name": f"c{number}", "statement": "s", "value": 1.0,
                                                   "threshold": 0.0, "holds": True}]})


def _worker(folder, number, start, done, lost):
    for seed in range(ROUNDS):
        start.wait()
        publish(folder, number, {"json": _result(number, seed)})
        done.wait()
        if number == 1:  # one reader checks the round
            rows = {(cells[0], cells[2]) for cells in
                    (line.strip("|").replace(" ", "").split("|") for line in (folder / "CLAIMS.md").open())
                    if cells[0].isdigit()}
            if rows != {(str(n), str(seed)) for n in range(1, WORKERS + 1)}:
                lost.value += 1


def test_concurrent_runs_lose_no_claims_md_update(tmp_path):
    ctx = mp.get_context("fork")  # the workers only write files: no threads or torch state involved
    start, done, lost = ctx.Barrier(WORKERS), ctx.Barrier(WORKERS), ctx.Value("i", 0)
    procs = [ctx.Process(target=_worker, args=(tmp_path, n, start, done, lost)) for n in range(1, WORKERS + 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WORKERS
    assert lost.value == 0
    assert {json.loads((tmp_path / f"fig{n}.json").read_text())["seed"] for n in range(1, WORKERS + 1)} == {ROUNDS - 1}
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
