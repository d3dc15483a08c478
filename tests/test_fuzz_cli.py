"""Fuzz (hypothesis, bounded examples): random command lines and random damage to a saved figN.json
(truncations, deleted keys, values of another type) give a clean result or one error line, never
a traceback."""
import contextlib
import io
import json
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import paper_repro
from paperfigs import registry, runner
from paperfigs.result import ResultError, parse_result, validate_result

from test_cli import _fake_module  # noqa: E402  (tests/ is on sys.path under pytest)

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,  # derandomized: no example database
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def fake_figures(monkeypatch):
    """Figures 97 and 98, both working, as the only figures."""
    monkeypatch.setitem(sys.modules, "fake_fig_ok", _fake_module())
    figs = {n: registry.FigureSpec(n, "ok", registry.PAPER_A, "fake_fig_ok", 1) for n in (97, 98)}
    for mod in (registry, runner, paper_repro):
        monkeypatch.setattr(mod, "FIGURES", figs)
    return figs


def _main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = paper_repro.main(argv)
        except SystemExit as e:  # argparse: --help, or a usage error
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def _assert_clean(rc, err):
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    if rc == 2:
        assert lines[-1].startswith("paper_repro.py: error: "), err
    elif rc == 1:  # several figures asked for, some failed: one line each, then the summary
        assert lines[-1].startswith("figures that crashed: ")
        assert all(line.startswith(("figure ", "figures that crashed", "paper_repro.py: warning")) for line in lines)
    else:
        assert rc == 0 and "error" not in err, (rc, err)


def _args(tmp):
    folder = str(tmp / "out")
    blocker = tmp / "a_file"
    blocker.write_text("x")
    value = {
        "--figure": st.lists(st.sampled_from(["97", "98", "2", "0", "16", "x", "-1", "", "9" * 30]), max_size=3),
        "--out": st.sampled_from([[folder], [""], [str(blocker)], [str(blocker / "sub")], []]),
        "--seed": st.one_of(st.integers(-2**70, 2**70).map(lambda v: [str(v)]), st.just(["1.5"]), st.just([])),
        "--threads": st.one_of(st.integers(-3, 5000).map(lambda v: [str(v)]), st.just(["two"])),
        "--device": st.sampled_from([["cpu"], ["auto"], ["tpu"], []]),
        "--data-root": st.sampled_from([[folder], ["/nonexistent/data"], [str(blocker)]]),
        "--ns-dtype": st.sampled_from([["float32"], ["bfloat16"], ["auto"], ["fp32"], []]),
    }
    flag = st.sampled_from(["--quick", "--replot", "--all", "--list", "--bogus", "-f"])
    option = st.sampled_from(sorted(value)).flatmap(lambda k: value[k].map(lambda v: [k, *v]))
    return st.lists(st.one_of(option, flag.map(lambda f: [f])), max_size=6).map(
        lambda parts: [token for part in parts for token in part])


def test_fuzz_command_lines(fake_figures, tmp_path, monkeypatch):
    # main() writes the default --out (./figures) and sets PAPER_REPRO_DATA_ROOT / _NS_DTYPE: keep
    # both inside this test (a user's figures/ and the other tests' environment stay untouched)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    for name in ("PAPER_REPRO_DATA_ROOT", "PAPER_REPRO_NS_DTYPE"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)   # unset now, and unset again after the test

    @FUZZ
    @given(_args(tmp_path))
    def check(argv):
        rc, _, err = _main(argv)
        _assert_clean(rc, err)

    check()


def _paths(node, prefix=()):
    """Every (container path, key) in a JSON tree."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        yield prefix + (key,)
        yield from _paths(child, prefix + (key,))


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                           max_leaves=6)


def _damage(good: bytes):
    """A strategy of damaged copies of `good`: truncated, a key deleted, or a value replaced."""
    tree = json.loads(good)
    paths = list(_paths(tree))

    def edit(args):
        path, new, delete = args
        out = json.loads(good)
        node = out
        for key in path[:-1]:
            node = node[key]
        if delete:
            del node[path[-1]]
        else:
            node[path[-1]] = new
        return json.dumps(out, allow_nan=True).encode()

    truncated = st.integers(0, len(good) - 1).map(lambda k: good[:k])
    edited = st.tuples(st.sampled_from(paths), JSON_VALUES, st.booleans()).map(edit)
    return st.one_of(truncated, edited, edited)


def _good_result(fake_figures, tmp_path) -> bytes:
    assert paper_repro.main(["--figure", "98", "--quick", "--out", str(tmp_path)]) == 0
    return (tmp_path / "fig98.json").read_bytes()


def _assert_one_line(e: ResultError):
    msg = str(e)
    assert "\n" not in msg
    assert msg.startswith("fig98.json is not a valid result (") and msg.endswith("); rerun --figure 98")


def test_fuzz_result_reader(fake_figures, tmp_path):
    good = _good_result(fake_figures, tmp_path)

    @settings(FUZZ, max_examples=400)
    @given(_damage(good))
    def check(data):
        try:
            result = parse_result(data, 98)
        except ResultError as e:
            _assert_one_line(e)
        else:
            validate_result(result, 98)

    check()


def test_fuzz_replot_of_damaged_results(fake_figures, tmp_path):
    good = _good_result(fake_figures, tmp_path)

    @settings(FUZZ, max_examples=30)  # each valid example draws a png and a pdf
    @given(_damage(good))
    def check(data):
        (tmp_path / "fig98.json").write_bytes(data)
        rc, _, err = _main(["--figure", "98", "--replot", "--out", str(tmp_path)])
        assert rc in (0, 2)
        _assert_clean(rc, err)

    check()
