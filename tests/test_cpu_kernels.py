"""--cpu-kernels avx2: an x86 CPU with AVX-512 computes as a CPU with AVX2 only does.

The check that matters: runs that were recorded on a 2-core AMD EPYC with AVX2 only (2026-12-05,
archived beside two of the committed quick Muon selections) come out bit for bit the same when
trained again here with the avx2 kernels, whatever x86 CPU "here" is. An MLP run (torch's own
kernels decide it) and a ResNet run (oneDNN's convolutions decide it) are trained again.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments import envvars

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "experiments" / "selections" / "runs"
# Archived tuning runs of figure 1's (MLP) and figure 7's (ResNet) quick Muon records of the AVX2 CPU.
RECORDED_ON_AVX2 = ("14812e45385b4cb136ebc4ae5103e35c", "5585b99e2f4159f76a02179c0140b87e")

X86_WITH_AVX2 = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")

_RETRAIN = """
import json, sys
from experiments import envvars
if sys.argv[1] == "avx2":
    envvars.use_cpu_kernels("avx2")
else:   # this CPU's own kernels, the Newton-Schulz precision of the AVX2 CPU
    import os
    os.environ[envvars.NS_DTYPE_ENV] = "float32"
from experiments.engine import execute
out = []
for task, config in json.loads(sys.stdin.read()):
    record = execute(task, config, threads=1)
    out.append({"result": record["result"], "cpu_kernels": record["versions"].get("cpu_kernels")})
print(json.dumps(out))
"""


def _clean_env() -> dict:
    """This process's environment without any kernel or Newton-Schulz choice, the project importable."""
    env = {k: v for k, v in os.environ.items() if k not in envvars.AVX2_KERNEL_ENV and k != envvars.NS_DTYPE_ENV}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _first_run(tuning_key: str) -> dict:
    path = RUNS / f"{tuning_key}.json.gz"
    return next(iter(json.load(gzip.open(path))["runs"].values()))


def _retrain(kernels: str, records: list[dict]) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", _RETRAIN, kernels], cwd=ROOT, env=_clean_env(), capture_output=True,
                          text=True, timeout=600,
                          input=json.dumps([[r["task"], r["config"]] for r in records]))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _numbers(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "wall_s"}


@pytest.mark.skipif(not X86_WITH_AVX2, reason="needs an x86 CPU with AVX2 or AVX-512")
def test_avx2_kernels_give_the_avx2_cpus_numbers_bit_for_bit():
    recorded = [_first_run(k) for k in RECORDED_ON_AVX2]
    assert all(r["config"]["optimizer"] == "muon" for r in recorded)
    again = _retrain("avx2", recorded)
    for rec, new in zip(recorded, again):
        assert new["cpu_kernels"] == "AVX2 (forced)"
        assert _numbers(new["result"]) == _numbers(rec["result"]), rec["config"]["model"]


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() != "AVX512",
                    reason="the native kernels are the AVX2 ones on this CPU")
def test_native_avx512_kernels_round_otherwise():
    # The control: without the avx2 kernels (float32 Newton-Schulz still forced) the MLP run's
    # per-class accuracies come out otherwise, so the test above can tell the kernels apart.
    recorded = _first_run(RECORDED_ON_AVX2[0])
    again = _retrain("native", [recorded])[0]
    assert again["cpu_kernels"] == "AVX512"
    assert _numbers(again["result"]) != _numbers(recorded["result"])


def test_use_cpu_kernels_refuses_what_it_cannot_do(monkeypatch):
    with pytest.raises(ValueError, match="expected one of native, avx2"):
        envvars.use_cpu_kernels("avx512")
    envvars.use_cpu_kernels("native")   # leaves everything as it is
    for name in envvars.AVX2_KERNEL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(envvars.NS_DTYPE_ENV, "bfloat16")
    with pytest.raises(ValueError, match="without native bfloat16"):
        envvars.use_cpu_kernels("avx2")
    monkeypatch.delenv(envvars.NS_DTYPE_ENV)
    with pytest.raises(RuntimeError, match="before torch is loaded"):   # torch is loaded in this process
        envvars.use_cpu_kernels("avx2")
    assert not any(name in os.environ for name in envvars.AVX2_KERNEL_ENV)


def _cli(args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "paper_repro.py"), *args], cwd=cwd, env=_clean_env(),
                          capture_output=True, text=True, timeout=300)


def test_cli_refuses_contradictions(tmp_path):
    done = _cli(["--figure", "2", "--quick", "--cpu-kernels", "avx2", "--ns-dtype", "bfloat16"], tmp_path)
    assert done.returncode == 2 and "forces bfloat16 Newton-Schulz" in done.stderr
    done = _cli(["--figure", "2", "--quick", "--cpu-kernels", "avx2", "--device", "cuda"], tmp_path)
    assert done.returncode == 2 and "give --device cpu" in done.stderr
    assert not (tmp_path / "figures").exists()


@pytest.mark.skipif(not X86_WITH_AVX2, reason="needs an x86 CPU with AVX2 or AVX-512")
def test_cli_writes_avx2_runs_to_their_own_folder_and_says_so(tmp_path):
    done = _cli(["--figure", "2", "--quick", "--cpu-kernels", "avx2"], tmp_path)
    assert done.returncode == 0, done.stderr
    fig = json.loads((tmp_path / "figures" / "avx2" / "fig2.json").read_text())
    assert fig["versions"]["cpu_kernels"] == "AVX2 (forced)"
    assert not (tmp_path / "figures" / "fig2.json").exists()


def test_audit_reads_the_avx2_cpus_records_and_refuses_a_contradiction(tmp_path):
    # The audit chooses the kernels before anything loads torch (else use_cpu_kernels refuses), and
    # with them the float32 Muon records: figure 1's quick records, the AVX2 CPU's, all check out.
    audit = [sys.executable, "-m", "paperfigs.audit", "--scale", "quick", "--figure", "1", "--cpu-kernels", "avx2"]
    done = subprocess.run(audit, cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=300)
    if X86_WITH_AVX2:
        assert done.returncode == 0, done.stderr[-2000:]
        assert "0 stale, 0 unchecked" in done.stdout, done.stdout
    env = {**_clean_env(), envvars.NS_DTYPE_ENV: "bfloat16"}
    done = subprocess.run(audit, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "forces bfloat16 Newton-Schulz" in done.stderr
