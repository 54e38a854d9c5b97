"""A real single-node Apache Kafka broker (KRaft, combined broker + controller) for local use.

The broker runs from the jars that ``deploy/pom.xml`` resolves into ``paths.kafka_jar_dir()``;
it is started in the background (its own session, so it outlives the command that started it),
logs to ``DATA_DIR/broker.log`` (``deploy/log4j2-kafka.properties``) and keeps its pid in
``DATA_DIR/broker.pid``.

    streamrec kafka start  --port 9092 --data-dir .runtime/kafka
    streamrec kafka status --data-dir .runtime/kafka
    streamrec kafka stop   --data-dir .runtime/kafka

From Python::

    with running_broker() as bootstrap:   # a free port and a temporary data dir
        ...
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from streamrec import paths
from streamrec.ports import free_port

LOG4J_CONFIG = paths.PROJECT_ROOT / "deploy" / "log4j2-kafka.properties"
PID_FILE = "broker.pid"
LOG_FILE = "broker.log"
OUT_FILE = "broker.out"  # the JVM's own stdout/stderr (crashes before log4j is up)
PROPS_FILE = "server.properties"


class BrokerError(RuntimeError):
    """The broker could not be started or stopped; the message carries the log tail."""


def default_data_dir() -> Path:
    return paths.runtime_dir() / "kafka"


# ---------------------------------------------------------------------------------------------
# jars and java


def ensure_jars() -> Path:
    """The Kafka jar folder; runs Maven (``deploy/pom.xml``) once when it is empty."""
    d = paths.kafka_jar_dir()
    if not _has_kafka_jars(d):
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                f"no Kafka jars in {d} and no `mvn` on PATH: install Maven and run `streamrec setup`"
            )
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(paths.PROJECT_ROOT / "deploy" / "pom.xml"),
            f"-Dstreamrec.jar.dir={paths.jar_dir()}",
            "process-resources",
        ]
        print(f"kafka: resolving broker jars with Maven: {' '.join(cmd)}", file=sys.stderr)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or not _has_kafka_jars(d):
            raise BrokerError(
                f"Maven could not resolve the Kafka jars into {d} (exit {r.returncode}); "
                f"run `streamrec setup`.\n{(r.stdout + r.stderr)[-3000:]}"
            )
    return d


def _has_kafka_jars(d: Path) -> bool:
    return d.is_dir() and any(d.glob("kafka_2.13-*.jar"))


def java_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("no `java` found (set JAVA_HOME or put a JDK 17+ on PATH)")
    return java


def _classpath(jar_dir: Path) -> str:
    return os.pathsep.join(str(p) for p in sorted(jar_dir.glob("*.jar")))


# ---------------------------------------------------------------------------------------------
# configuration and storage


def server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    log_dir = data_dir / "logs"
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # small machine: few threads, small segments, compaction that actually runs in a demo
        "num.network.threads": "2",
        "num.io.threads": "4",
        "log.cleaner.threads": "1",
        "log.retention.hours": "168",
        "log.segment.bytes": str(64 * 1024 * 1024),
        # Flink's exactly-once KafkaSink keeps transactions open up to a checkpoint apart
        "transaction.max.timeout.ms": str(60 * 60 * 1000),
        "auto.create.topics.enable": "false",
    }
    lines = ["# written by streamrec.kafka_broker; regenerated on every start"]
    lines += [f"{k}={v}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


def _read_props(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
    return out


def _port_of(props: dict[str, str], listener: str) -> int | None:
    for part in props.get("listeners", "").split(","):
        if part.startswith(listener + "://"):
            return int(part.rsplit(":", 1)[1])
    return None


def _format_storage(java: str, jar_dir: Path, data_dir: Path) -> None:
    if (data_dir / "logs" / "meta.properties").exists():
        return
    cluster_id = _random_cluster_id()
    cmd = [
        java,
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={data_dir}",
        "-cp",
        _classpath(jar_dir),
        "kafka.tools.StorageTool",
        "format",
        f"--cluster-id={cluster_id}",  # '=' form: a random id may start with '-'
        "-c",
        str(data_dir / PROPS_FILE),
        "--standalone",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BrokerError(
            f"formatting KRaft storage in {data_dir} failed (exit {r.returncode}):\n"
            f"{(r.stdout + r.stderr)[-3000:]}"
        )


def _random_cluster_id() -> str:
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


# ---------------------------------------------------------------------------------------------
# processes


def _read_pid(data_dir: Path) -> int | None:
    try:
        return int((Path(data_dir) / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie child of ours is reaped and counts as gone)."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _is_our_broker(pid: int, data_dir: Path) -> bool:
    """Guard against a recycled pid: the process must be a kafka.Kafka on our properties."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _alive(pid)  # no /proc (macOS): trust the pid file
    args = [a.decode(errors="replace") for a in cmdline]
    return "kafka.Kafka" in args and str(Path(data_dir) / PROPS_FILE) in args


def _running_pid(data_dir: Path) -> int | None:
    pid = _read_pid(data_dir)
    if pid is not None and _alive(pid) and _is_our_broker(pid, data_dir):
        return pid
    return None


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _logs_tail(data_dir: Path) -> str:
    return (
        f"--- {data_dir / LOG_FILE} (tail) ---\n{_tail(data_dir / LOG_FILE)}\n"
        f"--- {data_dir / OUT_FILE} (tail) ---\n{_tail(data_dir / OUT_FILE, 20)}"
    )


def _accepts_requests(bootstrap: str, timeout: float = 2.0) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000, "log_level": 0})
    try:
        md = admin.list_topics(timeout=timeout)
        return bool(md.brokers)
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------
# public API


def start(
    port: int = 9092,
    data_dir: Path | str | None = None,
    controller_port: int | None = None,
    heap: str = "512m",
    timeout: float = 90,
) -> str:
    """Format (once) and start the broker in the background; returns ``"127.0.0.1:PORT"``.

    Idempotent: when a broker from ``data_dir`` already runs, its address is returned (an error
    if it listens on another port). Raises :class:`BrokerError` with the log tail if the process
    dies or does not answer Kafka requests within ``timeout`` seconds.
    """
    data_dir = Path(data_dir or default_data_dir()).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    old = _read_props(data_dir / PROPS_FILE)

    pid = _running_pid(data_dir)
    if pid is not None:
        running_port = _port_of(old, "PLAINTEXT")
        if running_port != port:
            raise BrokerError(
                f"a broker from {data_dir} already runs (pid {pid}) on port {running_port}, "
                f"not {port}: stop it first (streamrec kafka stop --data-dir {data_dir})"
            )
        bootstrap = f"127.0.0.1:{port}"
        _wait_ready(bootstrap, pid, data_dir, timeout)
        return bootstrap

    jar_dir = ensure_jars()
    java = java_bin()
    formatted = (data_dir / "logs" / "meta.properties").exists()
    if controller_port is None:
        # a formatted quorum keeps its controller endpoint; a fresh one gets any free port
        controller_port = (_port_of(old, "CONTROLLER") if formatted else None) or free_port()
    if controller_port == port:
        raise BrokerError(f"broker port and controller port are both {port}")
    for p in (port, controller_port):
        if not _port_free(p):
            raise BrokerError(f"port {p} on 127.0.0.1 is already in use")

    (data_dir / PROPS_FILE).write_text(server_properties(port, controller_port, data_dir))
    _format_storage(java, jar_dir, data_dir)

    cmd = [
        java,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={data_dir}",
        "-cp",
        _classpath(jar_dir),
        "kafka.Kafka",
        str(data_dir / PROPS_FILE),
    ]
    t0 = time.monotonic()
    with open(data_dir / OUT_FILE, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=data_dir,
        )
    (data_dir / PID_FILE).write_text(f"{proc.pid}\n")
    bootstrap = f"127.0.0.1:{port}"
    try:
        _wait_ready(bootstrap, proc.pid, data_dir, timeout)
    except BrokerError:
        stop(data_dir, timeout=10)
        raise
    print(
        f"kafka: broker up at {bootstrap} (pid {proc.pid}, {time.monotonic() - t0:.1f}s, "
        f"log {data_dir / LOG_FILE})",
        file=sys.stderr,
    )
    return bootstrap


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_ready(bootstrap: str, pid: int, data_dir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not _alive(pid):
            raise BrokerError(
                f"the Kafka broker (pid {pid}) exited during start-up\n{_logs_tail(data_dir)}"
            )
        if _accepts_requests(bootstrap):
            return
        if time.monotonic() > deadline:
            raise BrokerError(
                f"the Kafka broker at {bootstrap} did not answer within {timeout:.0f}s\n"
                f"{_logs_tail(data_dir)}"
            )
        time.sleep(0.25)


def stop(data_dir: Path | str | None = None, timeout: float = 30) -> bool:
    """Stop the broker of ``data_dir`` cleanly (SIGTERM; SIGKILL after ``timeout`` s).

    Returns True if a broker was running. Idempotent: nothing running is not an error.
    """
    data_dir = Path(data_dir or default_data_dir()).resolve()
    pid = _running_pid(data_dir)
    if pid is None:
        (data_dir / PID_FILE).unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        print(
            f"kafka: broker pid {pid} did not stop within {timeout:.0f}s, killing it",
            file=sys.stderr,
        )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
    (data_dir / PID_FILE).unlink(missing_ok=True)
    return True


def status(data_dir: Path | str | None = None) -> dict:
    """``{"running", "pid", "bootstrap", "answering", "data_dir", "log"}`` for ``data_dir``."""
    data_dir = Path(data_dir or default_data_dir()).resolve()
    pid = _running_pid(data_dir)
    port = _port_of(_read_props(data_dir / PROPS_FILE), "PLAINTEXT")
    bootstrap = f"127.0.0.1:{port}" if port else None
    return {
        "running": pid is not None,
        "pid": pid,
        "bootstrap": bootstrap,
        "answering": bool(pid and bootstrap and _accepts_requests(bootstrap)),
        "data_dir": str(data_dir),
        "log": str(data_dir / LOG_FILE),
    }


@contextlib.contextmanager
def running_broker(
    port: int | None = None, data_dir: Path | str | None = None, **start_kwargs
) -> Iterator[str]:
    """Start a broker (free port and temporary data dir by default), yield its bootstrap, stop it."""
    tmp = None
    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="streamrec-kafka-")
        data_dir = tmp
    try:
        bootstrap = start(port or free_port(), data_dir, **start_kwargs)
        try:
            yield bootstrap
        finally:
            stop(data_dir)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="streamrec kafka", description="a local single-node Apache Kafka broker (KRaft)"
    )
    sub = parser.add_subparsers(dest="action", required=True)
    for name, help_ in (
        ("start", "format (once) and start the broker in the background"),
        ("stop", "stop the broker cleanly"),
        ("status", "is it running and answering?"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument(
            "--data-dir",
            type=Path,
            default=default_data_dir(),
            help="broker data, pid and log (default: %(default)s)",
        )
        if name == "start":
            p.add_argument("--port", type=int, default=9092, help="client port (default 9092)")
            p.add_argument("--controller-port", type=int, default=None, help="default: free")
            p.add_argument("--heap", default="512m", help="JVM heap (default 512m)")
            p.add_argument("--timeout", type=float, default=90, help="seconds to wait for it")
        if name == "stop":
            p.add_argument("--timeout", type=float, default=30, help="seconds before SIGKILL")
    args = parser.parse_args(argv)

    try:
        if args.action == "start":
            bootstrap = start(
                args.port, args.data_dir, args.controller_port, args.heap, args.timeout
            )
            print(bootstrap)
        elif args.action == "stop":
            was = stop(args.data_dir, args.timeout)
            print("stopped" if was else "not running")
        else:
            st = status(args.data_dir)
            state = "running" if st["running"] else "stopped"
            if st["running"] and not st["answering"]:
                state = "running (not answering yet)"
            print(f"{state}  pid={st['pid']}  bootstrap={st['bootstrap']}  log={st['log']}")
            return 0 if st["running"] else 3
    except BrokerError as e:
        print(f"streamrec kafka {args.action}: {e}", file=sys.stderr)
        return 1
    return 0
