"""The training harness: metrics agree with direct computation, the optimizer protocol is honoured,
a non-finite loss stops cleanly, histories round-trip, same seed gives the same numbers."""
import math

import numpy as np
import pytest
import torch

from experiments.metrics import classification_evaluator, group_accuracy, per_class_accuracy, predict_logits
from experiments.models.vision import MLP, ResNetCNN
from experiments.optim import registry
from experiments.train import TrainConfig, config_from_history, load_history, save_history, train


def _blobs(n=240, d=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    means = 2.0 * torch.randn(k, d, generator=g)
    return means[y] + torch.randn(n, d, generator=g), y


def test_per_class_accuracy_matches_a_loop_and_marks_absent_classes_nan():
    rng = np.random.default_rng(0)
    logits, y = rng.normal(size=(50, 4)), rng.integers(0, 3, size=50)  # class 3 never appears
    acc = per_class_accuracy(logits, y, 4)
    pred = logits.argmax(1)
    for c in range(3):
        assert acc[c] == pytest.approx(np.mean(pred[y == c] == c))
    assert math.isnan(acc[3])


def test_group_accuracy():
    pred = np.array([0, 1, 1, 0, 1])
    y = np.array([0, 1, 0, 0, 0])
    groups = np.array([2, 2, 5, 5, 5])
    assert group_accuracy(pred, y, groups) == {2: 1.0, 5: pytest.approx(1 / 3)}


def test_harness_per_class_accuracy_equals_direct_evaluation():
    X, y = _blobs()
    model = MLP(6, 3, width=16, depth=2, generator=torch.Generator().manual_seed(1))
    ev = classification_evaluator({"test": (X, y)}, 3)
    h = train(model, X, y, TrainConfig("sgd", 0.05, steps=30, batch_size=32, eval_every=10), ev, progress=False)
    assert h["status"] == "ok" and h["step"] == [0, 10, 20, 30]
    model.eval()
    direct = per_class_accuracy(predict_logits(model, X), y, 3)
    np.testing.assert_allclose(h["metrics"]["test/per_class"][-1], direct)
    assert h["metrics"]["test/balanced_acc"][-1] > h["metrics"]["test/balanced_acc"][0]  # it learned
    assert all(b >= a for a, b in zip(h["wall_s"], h["wall_s"][1:]))


def test_same_seed_same_history_and_other_seed_differs():
    X, y = _blobs()
    ev = classification_evaluator({"tr": (X, y)}, 3)

    def run(seed):
        model = MLP(6, 3, width=8, depth=2, generator=torch.Generator().manual_seed(0))
        return train(model, X, y, TrainConfig("adam", 1e-2, 12, 16, 4, seed=seed), ev, progress=False)

    a, b, c = run(0), run(0), run(1)
    assert a["train_loss"] == b["train_loss"]
    assert a["train_loss"] != c["train_loss"]


class _Boom(torch.nn.Module):
    """Returns NaN outputs from the `bad`-th training forward on."""

    def __init__(self, bad):
        super().__init__()
        self.lin, self.calls, self.bad = torch.nn.Linear(6, 3), 0, bad

    def forward(self, x):
        if self.training:
            self.calls += 1
        out = self.lin(x)
        return out * float("nan") if self.training and self.calls >= self.bad else out


def test_non_finite_loss_stops_cleanly_and_keeps_history():
    X, y = _blobs()
    ev = classification_evaluator({"tr": (X, y)}, 3)
    h = train(_Boom(bad=6), X, y, TrainConfig("sgd", 0.1, 20, 16, 2), ev, progress=False)
    assert h["status"] == "stopped: non-finite loss at step 6"
    assert h["step"] == [0, 2, 4]
    assert all(math.isfinite(v) for v in h["train_loss"])


def test_history_round_trip(tmp_path):
    X, y = _blobs()
    cfg = TrainConfig("sgd", 0.05, 6, 32, 3, seed=4, optimizer_kwargs=(("momentum", 0.5),))
    h = train(MLP(6, 3, 8, 2), X, y, cfg, classification_evaluator({"tr": (X, y)}, 3), progress=False)
    h["metrics"]["tr/per_class"][0][1] = float("nan")  # NaN must survive as NaN
    save_history(tmp_path / "h.json", h)
    back = load_history(tmp_path / "h.json")
    assert config_from_history(back) == cfg
    assert back["step"] == h["step"] and back["train_loss"] == h["train_loss"]
    assert math.isnan(back["metrics"]["tr/per_class"][0][1])
    assert back["metrics"]["tr/acc"] == h["metrics"]["tr/acc"]


class _ProtocolSGD(torch.optim.SGD):
    """SGD that records which harness hooks were called, and in what state."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.log = []
        self.warm_batches = 0

    def wants_curvature(self):
        return True

    def curvature_params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def update_curvature(self, grads):
        assert all(p.grad is None for p in grads)  # sampled backward happens before the real one
        self.log.append("curv")

    def warm_start(self, grad_batches):
        for grads in grad_batches:
            assert all(g is not None and g.shape == p.shape for p, g in grads.items())
            self.warm_batches += 1

    def eval(self):
        self.log.append("eval")

    def train(self):
        self.log.append("train")


def test_evaluation_runs_in_eval_mode_and_warm_start_leaves_buffers_alone(monkeypatch):
    entry = registry.OptimizerEntry("probe", lambda model, lr: _ProtocolSGD(model.parameters(), lr))
    monkeypatch.setitem(registry.OPTIMIZERS, "probe", entry)
    X, y = _blobs(n=96)
    X = X[:, :4].reshape(-1, 1, 2, 2)
    model = ResNetCNN(1, 3, width=4, blocks=(1,), generator=torch.Generator().manual_seed(0))
    seen_modes = []

    def evaluate(m, step):
        seen_modes.append((m.training, torch.is_grad_enabled()))
        return {"step_seen": float(step)}

    buffers = {k: v.clone() for k, v in model.named_buffers()}
    h = train(model, X, y, TrainConfig("probe", 0.01, 0, 32, 2), evaluate, progress=False)
    assert h["warm_start_s"] > 0 and h["step"] == [0]
    assert all(torch.equal(buffers[k], v) for k, v in model.named_buffers())  # warm pass restored BN stats
    h = train(model, X, y, TrainConfig("probe", 0.01, 4, 32, 2), evaluate, progress=False)
    assert h["metrics"]["step_seen"] == [0.0, 2.0, 4.0]
    assert seen_modes == [(False, False)] * 4
    assert model.training  # restored after evaluation


def test_protocol_calls_are_ordered(monkeypatch):
    made = []

    def factory(model, lr):
        made.append(_ProtocolSGD(model.parameters(), lr))
        return made[-1]

    monkeypatch.setitem(registry.OPTIMIZERS, "probe", registry.OptimizerEntry("probe", factory))
    X, y = _blobs(n=64)
    train(MLP(6, 3, 8, 2), X, y, TrainConfig("probe", 0.01, 4, 32, 2), lambda m, s: {}, progress=False)
    opt = made[0]
    assert opt.warm_batches == 2  # one pass of 64 examples in batches of 32
    # eval/train around each of the 3 evaluations, one curvature update per step
    assert opt.log == ["eval", "train", "curv", "curv", "eval", "train", "curv", "curv", "eval", "train"]


def test_bad_config_raises():
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainConfig("sgd", 0.1, 10, 8, 2, loss="hinge")
    with pytest.raises(ValueError, match="unknown optimizer"):
        X, y = _blobs(n=16)
        train(MLP(6, 3, 4, 1), X, y, TrainConfig("nope", 0.1, 1, 8, 1), lambda m, s: {}, progress=False)


class _FailingCurvatureSGD(torch.optim.SGD):
    """SGD whose step raises the error a diverged curvature factor raises, from the 3rd step on."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.steps = 0

    def step(self, closure=None):
        self.steps += 1
        if self.steps >= 3:
            from experiments.optim.kronecker import CurvatureError

            raise CurvatureError("factor is not positive definite")
        return super().step(closure)


def test_optimizer_floating_point_error_stops_cleanly(monkeypatch):
    entry = registry.OptimizerEntry("failing", lambda model, lr: _FailingCurvatureSGD(model.parameters(), lr))
    monkeypatch.setitem(registry.OPTIMIZERS, "failing", entry)
    X, y = _blobs()
    h = train(MLP(6, 3, 8, 2), X, y, TrainConfig("failing", 0.1, 10, 16, 1),
              classification_evaluator({"tr": (X, y)}, 3), progress=False)
    assert h["status"].startswith("stopped: CurvatureError at step 3")
    assert h["step"] == [0, 1, 2]
