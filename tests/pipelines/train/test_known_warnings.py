"""The start-up filter hides exactly the known per-step torch.distributed FutureWarnings."""

from __future__ import annotations

import warnings

from pipelines.train.known_warnings import filter_known_warnings

NOISY = ("`torch.distributed.reduce_scatter_tensor` is deprecated. Please use "
         "`torch.distributed.reduce_scatter_single` instead.")


def _shown(message: str, category: type[Warning], module: str) -> bool:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        filter_known_warnings()  # in front of "always", as at start-up in front of the defaults
        warnings.warn_explicit(message, category, "c10d_logger.py", 83, module=module)
    return bool(seen)


def test_only_the_known_messages_from_torch_distributed_are_hidden():
    assert not _shown(NOISY, FutureWarning, "torch.distributed.c10d_logger")
    assert not _shown(NOISY.replace("reduce_scatter_tensor", "all_gather_into_tensor", 1), FutureWarning,
                      "deepspeed.comm.torch")
    assert _shown("`torch.load` with weights_only=False is deprecated", FutureWarning, "torch.serialization")
    assert _shown(NOISY, UserWarning, "torch.distributed.c10d_logger")  # another category still shows
    assert _shown(NOISY, FutureWarning, "mypackage.trainer")  # our own code's warnings still show
