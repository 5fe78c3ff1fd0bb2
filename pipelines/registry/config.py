"""``RegistryConfig``: the ``registry:`` settings section (model name, the promotion gate, the lease).

The gate is data, not code: each entry of ``thresholds`` becomes one ``mlflow.models.MetricThreshold``
(``min_value`` -> its absolute ``threshold`` floor; ``min_absolute_change`` / ``min_relative_change``
-> the improvement the challenger must show over the champion). Metric names are the flat keys of
an evaluation report (``self.mouth_psnr``, ``cross.lse_c``, ...). Stdlib only, so the settings
loader imports it without MLflow.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

ALIASES = ("challenger", "champion", "previous")


@dataclass
class GateThreshold:
    greater_is_better: bool = True
    min_value: float | None = None            # absolute floor (ceiling when lower is better)
    min_absolute_change: float | None = None  # > 0: the challenger must beat the champion by this
    min_relative_change: float | None = None  # in [0, 1], of |champion value|

    def __post_init__(self):
        if self.min_value is None and self.min_absolute_change is None and self.min_relative_change is None:
            raise ValueError("a threshold needs min_value, min_absolute_change or min_relative_change")
        if self.min_absolute_change is not None and self.min_absolute_change <= 0:
            raise ValueError(f"min_absolute_change={self.min_absolute_change}: must be > 0 "
                             "(MLflow's MetricThreshold); leave it out to only require a floor")
        if self.min_relative_change is not None and not 0 <= self.min_relative_change <= 1:
            raise ValueError(f"min_relative_change={self.min_relative_change}: must be in [0, 1]")


def default_thresholds() -> dict[str, GateThreshold]:
    """Mouth reconstruction must improve; lip sync and identity must stay above floors."""
    return {
        "self.mouth_psnr": GateThreshold(greater_is_better=True, min_value=0.0, min_absolute_change=0.1),
        "cross.lse_c": GateThreshold(greater_is_better=True, min_value=0.0),
        "cross.identity_distance": GateThreshold(greater_is_better=False, min_value=0.6),
    }


@dataclass
class RegistryConfig:
    model_name: str = "iptalker"          # registered model name when --name is not given
    eval_data: str = ""                   # frozen eval set (dataset URI) for versions without metrics
    eval_out_dir: str = "runs/registry-eval"
    # YAML files merge mapping by mapping: a later file drops a metric with `name: null`
    thresholds: dict[str, GateThreshold | None] = field(default_factory=default_thresholds)
    lease_seconds: float = 120.0          # a promote holding the lease longer is presumed dead
    lease_wait_seconds: float = 60.0      # how long a promote waits for a busy lease

    def __post_init__(self):
        self.thresholds = {k: v if isinstance(v, GateThreshold) else GateThreshold(**v)
                           for k, v in self.thresholds.items() if v is not None}
        if not self.thresholds:
            raise ValueError("registry.thresholds is empty: the gate would pass anything")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
