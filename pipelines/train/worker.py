"""The per-rank entry point every launcher starts: ``python -m pipelines.train.worker --config X``.

torchrun, the deepspeed launcher and a local run execute this module; Ray Train calls
``ray_train_loop`` in each worker. All read the resolved job config the launcher wrote
(``<out_dir>/resolved_config.json``), so every rank trains exactly the same job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def run(job_dict: dict) -> dict:
    """Train one rank in this process, then leave the process group."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu" if not _has_cuda() else "cuda")
    import torch.distributed as dist

    from pipelines.train.known_warnings import filter_known_warnings
    from pipelines.train.trainer import TrainJob, train

    filter_known_warnings()

    try:
        return train(TrainJob.from_dict(job_dict))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def ray_train_loop(config: dict) -> None:
    """Ray Train ``train_loop_per_worker``: same job, Ray made the process group already."""
    import ray.train

    metrics = run(config["job"])
    ray.train.report({k: float(v) for k, v in metrics.items()})


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="resolved job config (JSON) to train")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None,
                        help="set by the deepspeed launcher; LOCAL_RANK wins when both are set")
    args = parser.parse_args(argv)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    with open(args.config) as f:
        run(json.load(f))
    sys.stdout.flush()
    sys.stderr.flush()
    # ZeRO-3 with two engines in one process can abort at interpreter exit on a non-zero rank;
    # the work is saved and the group destroyed, so leave without running finalizers.
    os._exit(0)


if __name__ == "__main__":
    main()
