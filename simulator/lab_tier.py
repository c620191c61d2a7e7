"""The lab tier for tests and benchmarks: a three-node RabbitMQ cluster and a throwaway PostgreSQL 15.

Both run on loopback only. :class:`RabbitCluster` drives ``deploy/rabbitmq/lab-cluster.sh`` -- the
same script a developer runs by hand -- and makes accounts with ``deploy/rabbitmq/add-door.sh``, so
what runs in a lab has production's permissions. :class:`PostgresCluster` makes and runs a cluster as
the ``postgres`` user (initdb refuses root) in a folder that user owns, trusting local connections
(lab use only). The test suite's fixtures (``rabbitmq_cluster``, ``postgres_cluster``,
``postgres_url``) are in tests/fixtures/rabbitmq.py and postgres.py; the benchmarks in bench/ use
these classes directly.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy" / "rabbitmq"
LAB = DEPLOY / "lab-cluster.sh"
ADD_DOOR = DEPLOY / "add-door.sh"
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabError(RuntimeError):
    """lab-cluster.sh failed; the message carries what it printed (with the node's log tail)."""


@dataclass
class RabbitCluster:
    """The running lab cluster: one MQTT port per node, and the script's verbs as methods."""

    workdir: Path
    urls: list[str] = field(default_factory=list)
    start_s: float = 0.0

    @property
    def ports(self) -> list[int]:
        return [int(u.rsplit(":", 1)[1]) for u in self.urls]

    def port(self, node: int) -> int:
        """The MQTT port of node 1, 2 or 3."""
        return self.ports[node - 1]

    def _run(self, *args: str, stdin: str | None = None, timeout: float = 180) -> str:
        p = subprocess.run(["bash", str(LAB), *args], input=stdin, capture_output=True, text=True,
                           timeout=timeout)
        if p.returncode != 0:
            raise LabError(f"lab-cluster.sh {' '.join(args)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
        return p.stdout

    def start(self) -> None:
        t0 = time.monotonic()
        out = self._run("start", str(self.workdir))
        self.start_s = time.monotonic() - t0
        self.urls = [line for line in out.split() if line.startswith("mqtt://")]
        if len(self.urls) != 3:
            raise LabError(f"lab-cluster.sh start printed {out!r}, not three mqtt:// URLs")
        log.info("RabbitMQ lab cluster up in %.1f s: %s", self.start_s, " ".join(self.urls))

    def stop(self) -> None:
        self._run("stop", str(self.workdir))

    def kill(self, node: int) -> float:
        """SIGKILL node ``node`` (its whole process group); returns the seconds it took."""
        t0 = time.monotonic()
        self._run("kill", str(self.workdir), str(node))
        return time.monotonic() - t0

    def restart(self, node: int) -> float:
        """Start node ``node`` again and wait until it runs; returns the seconds it took."""
        t0 = time.monotonic()
        self._run("restart", str(self.workdir), str(node))
        return time.monotonic() - t0

    def ctl(self, node: int, *args: str, stdin: str | None = None) -> str:
        """``rabbitmqctl ARGS`` against node ``node``; its standard output."""
        return self._run("ctl", str(self.workdir), str(node), *args, stdin=stdin)

    def running_nodes(self, via: int = 1) -> list[str]:
        status = json.loads(self.ctl(via, "cluster_status", "--formatter", "json"))
        return sorted(status["running_nodes"])

    def queue_leader(self, queue: str, via: int = 1) -> int:
        """The node number (1-3) that leads quorum queue ``queue``."""
        rows = json.loads(self.ctl(via, "list_queues", "name", "type", "leader", "--formatter", "json"))
        for row in rows:
            if row["name"] == queue:
                if row["type"] != "quorum":
                    raise AssertionError(f"{queue} is a {row['type']} queue, not a quorum queue")
                return int(row["leader"].split("@")[0].removeprefix("rabbit"))
        raise LookupError(f"no queue {queue!r}; queues: {[r['name'] for r in rows]}")

    def add_account(self, *args: str, password: str) -> None:
        """``add-door.sh ARGS`` against node 1, e.g. ``add_account("door", site, door, password=...)``."""
        env = dict(os.environ, RABBITMQCTL=f"{LAB} ctl {self.workdir} 1", MQTT_PASSWORD=password)
        p = subprocess.run(["bash", str(ADD_DOOR), *args], env=env, capture_output=True, text=True,
                           timeout=120)
        if p.returncode != 0:
            raise LabError(f"add-door.sh {' '.join(args)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")

    def add_fleet_account(self, username: str, password: str) -> None:
        """One account for every simulated door of site 'fleet' (`accessctl-sim fleet`): each door's own
        rights, for all of them; an account the cluster already has is kept."""
        try:
            self.ctl(1, "add_user", username, stdin=password + "\n")
        except LabError as exc:
            if "already exists" not in str(exc):
                raise
        queue = "mqtt-subscription-accessctl-fleet-fleet-[0-9]+qos[01]"
        self.ctl(1, "set_permissions", "-p", "/", username, f"^{queue}$", f"^(amq\\.topic|{queue})$",
                 f"^(amq\\.topic|{queue})$")
        self.ctl(1, "set_topic_permissions", "-p", "/", username, "amq.topic",
                 r"^accessctl\.fleet\.[^.]+\.(events\..+|status|occupancy|cmd\.result)$",
                 r"^accessctl\.fleet\.([^.]+\.cmd|time|roster)$")


class PostgresError(RuntimeError):
    """initdb or pg_ctl failed; the message carries its output and the server log's tail."""


class PostgresCluster:
    """One PostgreSQL cluster in ``workdir`` (owned by ``postgres``), on 127.0.0.1:``port``."""

    def __init__(self, workdir: Path, port: int):
        self.workdir = workdir
        self.port = port
        self.data = workdir / "data"
        self.logfile = workdir / "server.log"
        self.start_s = 0.0

    @property
    def url(self) -> str:
        """The maintenance database's URL (``postgresql://postgres@127.0.0.1:PORT/postgres``)."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _as_postgres(self, *args: str, timeout: float = 120) -> str:
        p = subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True,
                           timeout=timeout, cwd=self.workdir)
        if p.returncode != 0:
            raise PostgresError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}{p.stderr}\n"
                                f"---- server log ----\n{self.log_tail()}")
        return p.stdout

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def init(self) -> None:
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                          "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8")

    def start(self) -> None:
        t0 = time.monotonic()
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.workdir}"
                " -c max_connections=50 -c shared_buffers=128MB")
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile),
                          "-o", opts, "-w", "-t", "60", "start")
        self.start_s = time.monotonic() - t0

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions; ``immediate``: like a crash)."""
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def create_database(self, name: str) -> str:
        import psycopg
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        import psycopg
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


