"""DeepSpeed wrapping, kept outside the model (torchtitan's ``parallelize``): process group,
precision, the resolved DeepSpeed config, one engine per trained network, cross-rank reductions.

Backend and precision follow the hardware: nccl + bf16 (fp16 where bf16 is unsupported) on CUDA,
gloo + fp32 on CPU (DeepSpeed refuses fp16 there: "Type fp16 is not supported on your device").
"""

from __future__ import annotations

import copy
import json
import os

import torch
import torch.distributed as dist

from .config import TrainConfig


def use_cuda() -> bool:
    return torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR", "cuda") != "cpu"


def init_distributed() -> tuple[int, int, int]:
    """Join (or create) the process group; returns (rank, local_rank, world_size).

    Works under torchrun, the deepspeed launcher, Ray Train (group already made) and a bare
    process (world of one on a free local port).
    """
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if torch.cuda.is_available() else "cpu")
    import deepspeed

    if not use_cuda():  # skip compiling the shared-memory comm op (no compiler needed)
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if "RANK" not in os.environ and not dist.is_initialized():
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    deepspeed.init_distributed(dist_backend="nccl" if use_cuda() else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda():
        torch.cuda.set_device(local_rank)
    return dist.get_rank(), local_rank, dist.get_world_size()


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports on 127.0.0.1. Every socket stays bound until all are picked:
    separate ``free_port()`` calls may return one port twice (CI once gave a Ray head the same
    port for ``--port`` and ``--dashboard-agent-listen-port``, and ``ray start`` failed)."""
    import contextlib
    import socket

    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if use_cuda() else torch.device("cpu")


def resolve_precision(requested: str) -> str:
    if requested != "auto":
        return requested
    if use_cuda():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def dtype_of(precision: str) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def deepspeed_config(cfg: TrainConfig, precision: str) -> dict:
    """Load the run's ``configs/deepspeed/zero*.json`` and fill its ``"auto"`` values from ``cfg``."""
    with open(cfg.deepspeed_json) as f:
        ds = json.load(f)
    fill = {
        ("train_micro_batch_size_per_gpu",): cfg.batch_size,
        ("gradient_accumulation_steps",): cfg.grad_accum,
        ("gradient_clipping",): cfg.gradient_clipping,
        ("bf16", "enabled"): precision == "bf16",
        ("fp16", "enabled"): precision == "fp16",
        # buffers follow the params (DeepSpeed keeps them fp32 otherwise, and e.g. spectral norm's
        # power-iteration vectors then meet bf16 weights); None = leave them as they are
        ("data_types", "buffer_dtype"): None if precision == "fp32" else precision,
        ("scheduler", "params", "total_num_steps"): cfg.max_steps,
        ("scheduler", "params", "warmup_num_steps"): max(0, min(cfg.warmup_steps, cfg.max_steps - 1)),
        ("scheduler", "params", "cos_min_ratio"): cfg.lr_floor,
    }
    for keys, value in fill.items():
        node = ds
        for k in keys[:-1]:
            node = node.get(k, {})
        if node.get(keys[-1]) == "auto":
            node[keys[-1]] = value
    if ds.get("train_batch_size") == "auto":  # derived by DeepSpeed from micro-batch x accum x world
        del ds["train_batch_size"]
    if "auto" in json.dumps(ds):
        raise ValueError(f"{cfg.deepspeed_json}: an \"auto\" value is left that TrainConfig does not fill")
    return ds


DISCRIMINATOR_BETA1 = 0.5  # AdamW beta1 of the discriminator (the GAN convention), any recipe


def client_optimizer(module: torch.nn.Module, lr: float, weight_decay: float, beta1: float):
    """The AdamW every engine steps (DeepSpeed takes it as a client optimizer: no op compile)."""
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, betas=(beta1, 0.999), weight_decay=weight_decay)


def lr_scheduler(optimizer: torch.optim.Optimizer, ds_config: dict):
    """The ``scheduler`` section of a DeepSpeed config around ``optimizer``, built as the engine
    builds it (``deepspeed.runtime.lr_schedules``); None without that section. For code that
    steps the same optimisation without an engine (the learning tests)."""
    from deepspeed.runtime import lr_schedules

    sched = ds_config.get("scheduler")
    return getattr(lr_schedules, sched["type"])(optimizer, **sched["params"]) if sched else None


def build_engine(module: torch.nn.Module, lr: float, weight_decay: float, ds_config: dict,
                 beta1: float):
    """One DeepSpeed engine (ZeRO per ``ds_config``) around ``client_optimizer``.

    Returns (engine, lr_scheduler); the scheduler comes from the config's ``scheduler`` section.
    """
    import deepspeed

    promote_scalar_params(module)
    optimizer = client_optimizer(module, lr, weight_decay, beta1)
    engine, _, _, scheduler = deepspeed.initialize(model=module, optimizer=optimizer,
                                                   config=copy.deepcopy(ds_config))
    return engine, scheduler


def promote_scalar_params(module: torch.nn.Module) -> None:
    """Give 0-dim parameters shape [1] (in place, same values).

    DeepSpeed 0.19.8 broadcasts every parameter as ``p.data.view(torch.uint8)``, which fails for a
    0-dim tensor (e.g. ``SyncLogit.scale``). Broadcasting keeps them [1]-shaped in checkpoints;
    ``pipelines.train.export`` reshapes them back to the model's own shapes.
    """
    for p in module.parameters():
        if p.dim() == 0:
            p.data = p.data.reshape(1)


def set_requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Average a dict of floats over ranks (keys must match on every rank)."""
    if not values or not dist.is_initialized() or dist.get_world_size() == 1:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device())
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def broadcast_str(text: str, src: int = 0, size: int = 128) -> str:
    """Rank ``src``'s string on every rank (a byte tensor, no pickled objects on the wire)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return text
    buf = torch.zeros(size, dtype=torch.uint8, device=device())
    raw = text.encode()[:size]
    buf[: len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
    dist.broadcast(buf, src)
    return bytes(buf.cpu().tolist()).rstrip(b"\0").decode()
