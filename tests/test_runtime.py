"""experiments/runtime: the torch thread count."""
import pytest
import torch

from experiments.runtime.threads import torch_threads


def test_torch_threads_sets_and_restores_the_count_even_on_error():
    before = torch.get_num_threads()  # 1: conftest sets it for the session
    with pytest.raises(RuntimeError):
        with torch_threads(before + 1):
            assert torch.get_num_threads() == before + 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError):
        with torch_threads(0):
            pass
