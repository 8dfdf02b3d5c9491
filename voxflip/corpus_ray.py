"""Corpus rendering on a Ray cluster: the jobs of :mod:`voxflip.corpus` as Ray tasks.

``voxflip render --manifest M --out DIR --ray ADDRESS`` connects to a running cluster
(``ray.init(address=ADDRESS)``); ``--ray local`` starts a local instance with ``--workers``
CPUs. Each task runs :func:`voxflip.corpus.render_job`; a Ray worker process keeps its converter
between tasks, as a pool worker does. The input and output paths must be the same on every
node (shared storage), and every node needs voxflip installed. Ray is the optional extra
``ray``: ``pip install "voxflip[ray]"``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from voxflip.engine.errors import MissingDependencyError, install_hint

from .corpus import RenderJob, RenderSettings, render_job


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(f"--ray needs the ray package; install it with: {install_hint('ray')}") from None
    return ray


def run_ray(jobs: list[RenderJob], settings: RenderSettings, done: Callable[[dict[str, Any]], None], *,
            address: str, workers: int) -> None:
    """Render ``jobs`` as Ray tasks; ``done(record)`` as each ends, in the order they end.

    Args:
        address: a cluster address for ``ray.init`` (``auto``, ``ray://host:10001``, ``host:6379``),
            or ``local`` to start a local instance with ``workers`` CPUs (stopped at the end).
    """
    ray = import_ray()
    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False,
                                  "include_dashboard": False, "configure_logging": True}
        if address == "local":
            ray.init(num_cpus=workers, **kwargs)
        else:
            ray.init(address=address, **kwargs)
        started_here = True
    try:
        if not jobs:
            return
        task = ray.remote(num_cpus=1, max_retries=0)(render_job)
        settings_ref = ray.put(settings)
        pending = [task.remote(job, settings_ref) for job in jobs]
        try:
            while pending:
                finished, pending = ray.wait(pending, num_returns=1)
                for ref in finished:
                    done(ray.get(ref))
        except BaseException:   # stopped: cancel what is still queued or running on the cluster
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()
