"""Starting or joining Ray, and checking up front that the cluster can run a trial at all.

``ray.address`` null starts a local Ray on this machine (the embedded default); ``auto`` joins the cluster
this machine is part of (``ray start``), ``ray://host:10001`` connects through Ray Client. A trial that
asks for more CPUs or GPUs than any node has would wait forever without a word (DESIGN §7), so
:func:`check_resources` fails fast instead, naming what was asked for and what the cluster has.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtl.errors import ConfigError
from study.schema import RaySettings, Resources

LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2


class ClusterError(ConfigError):
    """The Ray cluster cannot run the study's trials as configured."""


def check_resources(
    nodes: Sequence[Mapping[str, float]], resources: Resources, where: str = "the Ray cluster"
) -> None:
    """Raise :class:`ClusterError` unless some node has ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs.

    ``nodes`` lists the resources (``{"CPU": 2.0, "GPU": 1.0, ...}``) of each alive node.
    """
    cpus, gpus = resources.cpus_per_trial, resources.gpus_per_trial
    described = (
        "; ".join(f"node {i}: {n.get('CPU', 0):g} CPU, {n.get('GPU', 0):g} GPU" for i, n in enumerate(nodes))
        or "no alive nodes"
    )
    if gpus > 0 and not any(n.get("GPU", 0) > 0 for n in nodes):
        raise ClusterError(
            f"resources.gpus_per_trial is {gpus:g} but {where} has no GPUs ({described}); Ray would wait "
            f"forever for one. Set resources.gpus_per_trial: 0 and train.device: cpu, "
            f"or join a cluster with GPUs."
        )
    if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        raise ClusterError(
            f"no node of {where} can hold one trial (resources.cpus_per_trial {cpus:g}, gpus_per_trial "
            f"{gpus:g}): {described}. Lower the per-trial resources or give Ray more (ray.num_cpus)."
        )


@dataclass
class Interrupt:
    requested: bool = False


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Interrupt]:
    """Ctrl+C (SIGINT) inside the block is remembered instead of raised, so that a start-up that swallows
    it (Ray's does) cannot lose it: the caller checks ``requested`` after the block. Outside the main
    thread (no signal handlers there) the block runs as is."""
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return

    def remember(signum: int, frame: Any) -> None:
        interrupt.requested = True

    previous = signal.signal(signal.SIGINT, remember)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGINT, previous)


def alive_nodes() -> list[dict[str, float]]:
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


CONNECT_TIMEOUT_S = 10.0


def check_reachable(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`ClusterError` unless something accepts a TCP connection at ``address``
    (``host:port`` or ``ray://host:port``) within ``timeout`` seconds; ``auto`` and ``local`` pass (Ray finds
    the cluster of this machine itself, and says so at once when there is none)."""
    import socket

    if address is None or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as exc:
        raise ClusterError(
            f"ray.address {address!r}: nothing answers there ({exc.__class__.__name__}: {exc}) within "
            f"{timeout:.0f} s; is the Ray head running (`ray start --head`)? For the cluster of this machine "
            "use address: auto"
        ) from None


def init_ray(settings: RaySettings, resources: Resources) -> bool:
    """Start or join Ray as configured; returns True if this call started it (the caller shuts it down).

    If Ray is already initialised in this process (e.g. by a test fixture), it is used as is.
    """
    # DESIGN §7: a local ray.init writes an auth token unless auth is disabled.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    started = False
    runtime_env: dict[str, Any] | None = {"env_vars": dict(settings.env)} if settings.env else None
    if not ray.is_initialized():
        common: dict[str, Any] = {
            "runtime_env": runtime_env,
            "logging_level": logging.WARNING,
            # trials report through the study's own progress and error lines; workers' console output
            # (and the `SystemExit` tracebacks of workers stopped at shutdown) stays in Ray's logs
            "log_to_driver": False,
        }
        if settings.local:
            # address="local" always starts a new Ray here, even when another local cluster is running
            # (without it ray.init joins that one and rejects the object store size).
            ray.init(
                address="local",
                num_cpus=settings.num_cpus,
                num_gpus=settings.num_gpus,
                object_store_memory=settings.object_store_memory or LOCAL_OBJECT_STORE_BYTES,
                include_dashboard=False,
                **common,
            )
            where = "the local Ray"
        else:
            check_reachable(settings.address)  # Ray would retry for minutes against a silent address
            ray.init(address=settings.address, **common)
            where = f"the Ray cluster at {settings.address}"
        started = True
    else:
        where = "the running Ray"
    try:
        check_resources(alive_nodes(), resources, where)
    except ClusterError:
        if started:
            ray.shutdown()
        raise
    return started


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
