import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a CPU-heavy test on one thread: on a shared 2-core box, 2 OpenMP threads per process
    spin against the other jobs and run ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

