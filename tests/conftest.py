import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seed():
    try:
        import torch
    except ImportError:  # reading-side tests run without torch
        return
    torch.manual_seed(0)
