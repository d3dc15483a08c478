"""The README's Python examples run as written (a front door that crashes is a bug)."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    exec(compile(BLOCKS[index], f"README block {index}", "exec"), {"__name__": "__readme__"})
    if "train accuracy" in BLOCKS[index]:
        lines = [l for l in capsys.readouterr().out.splitlines() if "train accuracy" in l]
        accs = {l.split()[0]: float(l.split()[-1]) for l in lines}
        assert len(accs) == 5
        # every optimizer learns the planted 4-class problem well above chance (0.25)
        assert min(accs.values()) > 0.6, accs
