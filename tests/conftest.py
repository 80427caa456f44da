import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seed():
    try:
        import torch
    except ImportError:  # reading-side tests run without torch
        return
    # Tiny test models run far faster on one thread than on two contending ones.
    torch.set_num_threads(1)
    torch.manual_seed(0)
