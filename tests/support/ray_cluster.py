"""A Ray cluster on loopback addresses of this machine (127.0.0.2, 127.0.0.3, ...), for the
tests and the benchmark of sweeps on Ray (``hydra/launcher=ray``).

Every node is `ray start` of this environment's Ray with a temporary folder of its own (so
each node's log monitor forwards its own workers' output only), in a process group of its
own; the cluster stops by those groups. ``ray stop`` is not used: it stops every Ray process
on the machine, another test's or a user's cluster included. A node can be started in a
mount namespace of its own where a folder is covered by an empty file system: it runs here
but cannot see what is there, as a host without a shared path would not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from support.processes import PeakMemory, descendants, free_port, process_table, resident_bytes
from support.project import BIN_DIR, PROJECT_DIR

RAY = BIN_DIR / "ray"


def node_env() -> dict[str, str]:
    """The environment a node starts in: this environment's binaries first on PATH, and
    nothing of a pipeline's (store, tracking, sweep): the launcher must bring those."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINFLOW_", "MLFLOW_", "WANDB_", "RAY_"))}
    env.update(PATH=f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0")
    return env


def can_hide_folders() -> bool:
    """Whether a node can get a mount namespace of its own (unshare, as root)."""
    if os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@dataclass
class RayCluster:
    root: Path  # the nodes' temporary folders; outside any folder a node hides, short for Ray's socket paths
    address: str = ""  # the head's GCS, host:port
    nodes: list[str] = field(default_factory=list)  # each node's address, head first
    groups: list[int] = field(default_factory=list)  # each node's process group

    def start_node(
        self, ip: str, cpus: int, resources: dict[str, float] | None = None, hide: Path | None = None
    ) -> None:
        """The head (the first node) or a node that joins it: ``cpus`` CPUs (trials at once),
        1.5 GB of logical memory, an 80 MB object store; ``hide``: a folder it cannot see."""
        folder = self.root / f"node-{len(self.nodes)}"
        folder.mkdir(parents=True)
        args = [str(RAY), "start", f"--node-ip-address={ip}", f"--temp-dir={folder}", f"--num-cpus={cpus}"]
        args += ["--memory=1500000000", "--object-store-memory=80000000", "--disable-usage-stats"]
        args += [f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"]
        if resources:
            args += ["--resources", json.dumps(resources)]
        if not self.nodes:
            port = free_port()
            self.address = f"{ip}:{port}"
            args += ["--head", f"--port={port}", f"--ray-client-server-port={free_port()}", "--include-dashboard=false"]
        else:
            args += [f"--address={self.address}"]
        if hide is not None:
            cover = f'mount -t tmpfs -o size=1m tmpfs "{hide}" && exec "$@"'
            args = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", cover, "node", *args]
        log = folder / "ray-start.log"
        with log.open("w") as out:
            started = subprocess.Popen(
                args, env=node_env(), cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.groups.append(started.pid)  # its daemons stay in this group after it exits
        if started.wait(timeout=120) != 0:
            raise RuntimeError(f"ray start on {ip} failed:\n{log.read_text()[-3000:]}")
        self.nodes.append(ip)

    def wait_for_nodes(self) -> None:
        """Return once every node started is alive in the cluster (a joining node registers
        with the head shortly after its `ray start` returns)."""
        probe = (
            "import sys, time, ray\n"
            "ray.init(address=sys.argv[1], logging_level='ERROR')\n"
            "alive = lambda: sum(n['Alive'] for n in ray.nodes())\n"
            "deadline = time.monotonic() + 90\n"
            "while alive() < int(sys.argv[2]) and time.monotonic() < deadline:\n"
            "    time.sleep(0.5)\n"
            "print(alive())\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe, self.address, str(len(self.nodes))],
            env=node_env(),
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
        if result.stdout.strip() != str(len(self.nodes)):
            raise RuntimeError(f"not every node joined {self.address}:\n{result.stdout}{result.stderr[-3000:]}")

    def processes(self) -> list[int]:
        """Every live process of the cluster: the nodes' daemons (in the nodes' process groups)
        and the workers their raylets start (each in a session of its own, so by parentage)."""
        table = process_table()
        return descendants([pid for pid, (_, group) in table.items() if group in self.groups], table)

    def stop(self) -> list[int]:
        """SIGTERM to every node's group and every worker, joining nodes first; SIGKILL to what
        is left after 10 s. Returns the processes still alive after that (none, normally)."""
        started = set(self.processes())  # now: a worker leaves the tree once its raylet is gone
        for signal_number in (signal.SIGTERM, signal.SIGKILL):
            for group in reversed(self.groups):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal_number)
            for pid in started & set(process_table()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal_number)
            deadline = time.monotonic() + 10
            while started & set(process_table()) and time.monotonic() < deadline:
                time.sleep(0.2)
        return sorted(started & set(process_table()) | set(self.processes()))


@contextlib.contextmanager
def ray_cluster(nodes: list[tuple[str, int]], blind: tuple[str, Path] | None = None) -> Iterator[RayCluster]:
    """A running cluster of ``nodes`` (address, CPUs), the first the head; with ``blind``
    (address, folder), one more node without CPUs that cannot see ``folder`` and has the
    resource ``blind``, so only a trial that asks for it goes there. Stopped at the end."""
    cluster = RayCluster(Path(tempfile.mkdtemp(prefix="tf-ray-", dir="/tmp")))
    try:
        for ip, cpus in nodes:
            cluster.start_node(ip, cpus)
        if blind is not None:
            cluster.start_node(blind[0], 0, resources={"blind": 1}, hide=blind[1])
        cluster.wait_for_nodes()
        yield cluster
    finally:
        leftover = cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
        if leftover:
            raise RuntimeError(f"Ray processes still alive after stopping the cluster: {leftover}")


@dataclass
class Measured:
    result: subprocess.CompletedProcess  # type: ignore[type-arg]
    seconds: float  # wall time
    peak_bytes: int  # peak resident memory of the command, its children and the cluster together
    idle_bytes: int  # the cluster's resident memory before the command started


def run_measured(args: list[str], env: dict[str, str], cluster: RayCluster | None, timeout: float = 600) -> Measured:
    """Run a command from the project's folder; its wall time, and the peak resident memory
    of it, its children and the cluster's processes (nodes and trial workers; None: no
    cluster), sampled every 0.2 s."""
    cluster_processes = cluster.processes if cluster is not None else list
    idle = resident_bytes(cluster_processes())
    began = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(args, cwd=PROJECT_DIR, env=env, stdout=out, stderr=err, text=True)
        with PeakMemory(interval=0.2) as memory:
            memory.watch("command and cluster", lambda: descendants([process.pid]) + cluster_processes())
            returncode = process.wait(timeout=timeout)
        seconds = time.perf_counter() - began
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(args, returncode, out.read(), err.read())
    return Measured(result, seconds, memory.peaks()["all"], idle)
