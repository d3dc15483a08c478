"""The LM and MLP engine tasks (experiments/tasks/lm.py, width_mlp.py) and the per-run rules of
figures 13 and 14 built on them."""
import math

import pytest
import torch

from experiments.tasks import lm, width_mlp
from paperfigs import fig13_stale_inverses as fig13
from paperfigs import fig14_steps_to_adam as fig14

TINY = {"corpus": "political", "vocab": 64, "max_train_tokens": 3000, "T": 8, "d_model": 16, "n_layers": 1,
        "n_heads": 2, "batch_size": 8, "steps": 4, "eval_every": 2, "val_windows": 16, "bucket_edges": [8, 32],
        "bucket_windows": 8, "seed": 5, "optimizer": "adam", "lr": 1e-3}


def test_lm_run_is_a_function_of_its_config_not_of_the_global_rng():
    torch.manual_seed(123)
    a = lm.run(TINY)
    torch.manual_seed(999)  # a different global state must not change the run
    b = lm.run(TINY)
    assert {k: v for k, v in a.items() if k != "wall_s"} == {k: v for k, v in b.items() if k != "wall_s"}
    assert a["step"] == [0, 2, 4] and a["status"] == "ok"
    assert set(a["metrics"]) == {"val_loss", "train/top1", "train/topk", "val/top1", "val/topk", "test/top1",
                                 "test/topk"}
    assert all(len(v) == 3 for v in a["metrics"]["val/top1"])  # three frequency buckets
    assert a["metrics"]["val_loss"][0] == pytest.approx(math.log(64), rel=0.05)  # near-uniform at init
    c = lm.run({**TINY, "seed": 6})
    assert c["metrics"]["val_loss"] != a["metrics"]["val_loss"]


def test_lm_test_loss_reads_the_held_out_documents():
    a = lm.run({**TINY, "test_windows": 16, "bucket_edges": None})
    assert set(a["metrics"]) == {"val_loss", "test_loss"}
    val, test = a["metrics"]["val_loss"], a["metrics"]["test_loss"]
    assert all(math.isfinite(x) for x in test) and test != val  # other documents, other numbers
    X_test, Y_test = lm.test_windows("political", 5, 64, 3000, 8)
    model = __import__("experiments.models.transformer", fromlist=["TinyTransformer"]).TinyTransformer(
        64, 16, 1, 2, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():  # at step 0 the model is its initialisation: the loss over the first 16 test windows
        logits = model(X_test[:16])
        expected = float(torch.nn.functional.cross_entropy(logits.reshape(-1, 64), Y_test[:16].reshape(-1)))
    assert test[0] == pytest.approx(expected, rel=1e-5)


def test_lm_config_errors_name_the_key():
    with pytest.raises(ValueError, match="unknown config keys.*'vocab_size'"):
        lm.run({**TINY, "vocab_size": 64})
    with pytest.raises(ValueError, match="unknown config keys"):
        width_mlp.run({"seed": 0, "optimizer": "adam", "lr": 1e-3, "wdth": 8})


def test_fig13_divergence_rule():
    ok = {"metrics": {"val_loss": [4.0, 3.0]}, "status": "ok"}
    flat = {"metrics": {"val_loss": [4.0, 4.0]}, "status": "ok"}
    nan = {"metrics": {"val_loss": [4.0, None]}, "status": "ok"}
    stopped = {"metrics": {"val_loss": [4.0]}, "status": "stopped: non-finite loss at step 3"}
    assert fig13.cell(ok) == {"final_val_loss": 3.0, "diverged": False, "status": "ok"}
    assert fig13.cell(flat)["diverged"] and fig13.cell(nan)["diverged"]
    assert fig13.cell(stopped)["diverged"] and fig13.cell(stopped)["final_val_loss"] is None


def test_fig14_fraction_against_adams_final_loss_and_censoring():
    adam = {"step": [0, 10, 20, 30], "wall_s": [0, 1, 2, 3], "metrics": {"test_loss": [5, 3, 2.5, 2.0]}, "status": "ok"}
    fast = {"step": [0, 10, 20, 30], "wall_s": [0, 2, 4, 6], "metrics": {"test_loss": [5, 1.9, 1.5, 1.0]}, "status": "ok"}
    never = {"step": [0, 10, 20, 30], "wall_s": [0, 1, 2, 3], "metrics": {"test_loss": [5, 4, 3, 2.5]}, "status": "ok"}
    f = fig14.fraction(fast, adam, "lm")
    assert (f["steps"], f["adam_steps"], f["step_fraction"], f["wall_fraction"], f["censored"]) == (10, 30, 1 / 3,
                                                                                                    2 / 3, False)
    g = fig14.fraction(never, adam, "lm")
    assert g["censored"] and g["step_fraction"] == 1.0  # lower bound: run length / Adam's steps
    assert fig14.fraction(adam, adam, "lm")["step_fraction"] == 1.0
