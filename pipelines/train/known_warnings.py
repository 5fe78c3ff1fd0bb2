"""Start-up filter for the warnings that would otherwise flood training and benchmark output.

Stdlib only, so the CLI can call it before importing torch.
"""

from __future__ import annotations

import warnings

# DeepSpeed's ZeRO still calls collectives torch has deprecated, and torch.distributed warns on
# every step and rank: hundreds of identical lines in multi-rank training and `make bench`. Only
# these messages, only as FutureWarning raised in torch.distributed or DeepSpeed, are hidden; every
# other warning still shows.
NOISY_DISTRIBUTED_WARNINGS = (
    r"`torch\.distributed\.all_gather_into_tensor` is deprecated",
    r"`torch\.distributed\.reduce_scatter_tensor` is deprecated",
    r"`torch\.distributed\.all_reduce_coalesced` will be deprecated",
)

NOISY_MODULES = r"(torch\.distributed|deepspeed)(\.|$)"  # where the warning is attributed


def filter_known_warnings() -> None:
    """Hide the known per-step FutureWarnings (call once at start-up: CLI, each rank, benchmarks)."""
    for message in NOISY_DISTRIBUTED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning, module=NOISY_MODULES)
