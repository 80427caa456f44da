import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on a busy 2-core machine make tiny tensor ops many times slower; results are the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
