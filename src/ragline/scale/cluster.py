"""Joining a Ray cluster, once per process.

    ray = connect("auto")       # the running cluster; "local" (or None) starts one here
"""

from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Any

from ragline.errors import ConfigError, missing_extra

log = logging.getLogger(__name__)

NAMESPACE = "ragline"  # every actor of ragline's lives here: lookups never cross namespaces


def ray_module() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise missing_extra("ray", "ray") from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> ModuleType:
    """Ray, initialised for ragline. `address`: None or "local" starts a Ray instance in this
    machine (or joins the one RAY_ADDRESS names); "auto" joins the cluster this machine
    belongs to; anything else is a cluster address (host:port or ray://host:port)."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    where = None if address in (None, "", "local") else address
    kwargs: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False,
                              "include_dashboard": False, "logging_level": logging.WARNING}
    if where is None and not os.environ.get("RAY_ADDRESS"):
        kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
    # a worker must import the same ragline: the driver's path travels with the job
    kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(_import_paths())}}
    try:
        ray.init(address=where, **kwargs)
    except ConnectionError as e:
        raise ConfigError(f"cannot join the Ray cluster at {address!r}: {e}; start one with "
                          "`ray start --head`, or use --ray local") from None
    for name in ("ray", "ray.data", "ray.train", "ray.tune"):  # their INFO lines are noise here
        logging.getLogger(name).setLevel(logging.WARNING)
    log.info("Ray: %s", ray.cluster_resources())
    return ray


def has_gpus(ray: ModuleType) -> bool:
    return float(ray.cluster_resources().get("GPU", 0)) > 0


def _import_paths() -> list[str]:
    import ragline

    here = os.path.dirname(os.path.dirname(os.path.abspath(ragline.__file__)))
    extra = os.environ.get("PYTHONPATH", "")
    return [here, *(p for p in extra.split(os.pathsep) if p)]
