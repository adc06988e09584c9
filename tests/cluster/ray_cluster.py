"""A real Ray cluster on this machine, on loopback: a head and worker nodes, each a
``ray start`` with its own temp folder and ports (tests and bench/bench_cluster.py).

GPU slots are simulated with a custom resource (``SIM_GPU``: one per worker node), so
``serve --executor ray --ray-gpu-resource sim_gpu`` schedules GPU actors as it would on GPU
machines. ``kill_node`` kills a worker node's raylet, as a machine that dies would.
Only processes this cluster started are ever stopped (found by its temp folder).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

#: The cluster's address: Ray replaces 127.0.0.1 by the machine's network address, but any
#: other address of the loopback network is kept as is.
LOOPBACK = "127.0.0.2"
#: The custom resource standing in for one GPU.
SIM_GPU = "sim_gpu"


def ray_env() -> dict[str, str]:
    """Environment for every process of the cluster, the server included: loopback only
    (Ray's node address is 127.0.0.1), no usage reporting, node failures noticed in ~2 s."""
    return {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_health_check_initial_delay_ms": "1000",
        "RAY_health_check_period_ms": "500",
        "RAY_health_check_timeout_ms": "500",
        "RAY_health_check_failure_threshold": "4",
        "SAM3D_ENABLE_TEST_ENGINES": "1",
    }


def _ray_command() -> str:
    """The ``ray`` command of this Python's environment."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.is_file() else shutil.which("ray") or "ray"


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


@dataclass
class LocalRayCluster:
    """``start()`` a head (no CPUs: nothing runs there) and ``nodes`` worker nodes with
    ``cpus`` CPUs and ``gpus`` simulated GPUs each."""

    nodes: int = 2
    cpus: int = 1
    gpus: int = 1
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rc", dir="/tmp")))
    address: str = ""
    node_ports: list[int] = field(default_factory=list)
    ray_bin: str = field(default_factory=lambda: _ray_command())

    def _ray_start(self, name: str, args: list[str]) -> None:
        out = subprocess.run(
            [self.ray_bin, "start", "--temp-dir", str(self.root / name), *args],
            env=ray_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode != 0:
            raise RuntimeError(f"ray start ({name}) failed:\n{out.stdout}\n{out.stderr}")

    def start(self) -> LocalRayCluster:
        (gcs,) = _free_ports(1)
        self.address = f"{LOOPBACK}:{gcs}"
        self._ray_start(
            "head",
            [
                "--head",
                "--node-ip-address",
                LOOPBACK,
                "--port",
                str(gcs),
                "--num-cpus",
                "0",
                "--include-dashboard=false",
                "--disable-usage-stats",
                "--object-store-memory",
                str(100 * 2**20),
            ],
        )
        for i in range(self.nodes):
            self.add_node(i)
        self.wait_nodes(self.nodes + 1)
        return self

    def add_node(self, i: int) -> None:
        manager, objects, agent, grpc, metrics, env_agent = _free_ports(6)
        self.node_ports.append(manager)
        self._ray_start(
            f"node{i}",
            [
                "--address",
                self.address,
                "--node-ip-address",
                LOOPBACK,
                "--num-cpus",
                str(self.cpus),
                "--resources",
                json.dumps({SIM_GPU: self.gpus}),
                "--object-store-memory",
                str(100 * 2**20),
                "--node-manager-port",
                str(manager),
                "--object-manager-port",
                str(objects),
                "--dashboard-agent-listen-port",
                str(agent),
                "--dashboard-agent-grpc-port",
                str(grpc),
                "--metrics-export-port",
                str(metrics),
                "--runtime-env-agent-port",
                str(env_agent),
                "--disable-usage-stats",
            ],
        )

    def alive_nodes(self) -> int:
        """Nodes the cluster's control store counts alive (asked as a Ray client would)."""
        code = (
            "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', "
            "log_to_driver=False); print(sum(1 for n in ray.nodes() if n['Alive']))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, self.address],
            env=ray_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        try:
            return int(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return -1

    def wait_nodes(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive_nodes() >= n:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the Ray cluster did not reach {n} nodes in {timeout} s")

    def raylet_pid(self, i: int) -> int:
        port = self.node_ports[i]
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info["cmdline"] or []
            if cmd and cmd[0].endswith("raylet") and f"--node_manager_port={port}" in cmd:
                return p.pid
        raise LookupError(f"no raylet with node manager port {port}")

    def kill_node(self, i: int) -> float:
        """SIGKILL worker node ``i``'s raylet (a machine that dies); returns the time."""
        pid = self.raylet_pid(i)
        os.kill(pid, signal.SIGKILL)
        return time.time()

    def _processes(self) -> list[psutil.Process]:
        mine = str(self.root)
        found: dict[int, psutil.Process] = {}
        for p in psutil.process_iter(["cmdline"]):
            if any(mine in c for c in (p.info["cmdline"] or [])):
                found[p.pid] = p
                try:
                    for c in p.children(recursive=True):
                        found[c.pid] = c
                except psutil.Error:
                    pass
        return list(found.values())

    def stop(self) -> None:
        procs = self._processes()
        for p in procs:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        shutil.rmtree(self.root, ignore_errors=True)
