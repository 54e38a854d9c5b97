"""A local standalone Flink cluster (one JobManager, one TaskManager) from the PyFlink wheel.

The ``apache-flink`` wheel ships Flink's runtime jars and ``bin/`` scripts; this module runs
``bin/jobmanager.sh`` and ``bin/taskmanager.sh`` with ``FLINK_HOME`` = the ``pyflink`` package
folder and a generated, writable configuration under ``runtime_dir()/flink/conf``
(``config.yaml``: the wheel's defaults plus ports, slots, memory sized for a small machine and
``python.executable`` = this interpreter). Logs go to ``runtime_dir()/flink/log``.

    streamrec cluster start --rest-port 8081     # waits until the TaskManager has registered
    streamrec cluster status
    streamrec cluster stop

With ``--metrics-port P`` the JobManager and the TaskManager export their metrics (job and
operator metrics included) with Flink's Prometheus reporter on ``P`` and ``P+1`` (which process
gets which is first come, first served: scrape both). Reporters are cluster settings: a job
submitted with ``flink run`` cannot turn one on. The reporter is a plugin, loaded from
``FLINK_PLUGINS_DIR`` (``paths.flink_plugins_dir()`` when ``streamrec setup`` fetched it, else the
wheel's own ``plugins/``).

Submitting a job to it (see :func:`cluster_env`)::

    env = cluster_env(); subprocess.run([flink_bin(), "run", "-m", address(), "-py", ...], env=env)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from streamrec import paths
from streamrec.ports import free_port

IDENT = "streamrec"
PROMETHEUS_FACTORY = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
STATE_FILE = "cluster.json"
DAEMONS = ("standalonesession", "taskexecutor")


class ClusterError(RuntimeError):
    """The cluster could not be started or stopped; the message carries the log tail."""


def flink_home() -> Path:
    """The ``pyflink`` package folder: Flink's ``bin/``, ``lib/``, ``opt/`` and ``conf/``."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def flink_bin() -> Path:
    """The ``flink`` CLI script shipped in the wheel."""
    return flink_home() / "bin" / "flink"


def default_base_dir() -> Path:
    return paths.runtime_dir() / "flink"


def _dirs(base_dir: Path | str | None) -> tuple[Path, Path, Path, Path]:
    base = Path(base_dir or default_base_dir()).resolve()
    return base, base / "conf", base / "log", base / "pid"


def _set(d: dict, dotted: str, value) -> None:
    """``_set(cfg, "a.b.c", v)`` on the nested YAML the wheel ships."""
    *parents, leaf = dotted.split(".")
    for p in parents:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = d[p] = {}
        d = nxt
    d[leaf] = value


def metrics_settings(port: int, processes: int = 2) -> dict[str, str]:
    """Flink configuration that turns on the Prometheus reporter, for every process of a
    cluster on one host (a JobManager and its TaskManagers): each binds the first free port of
    ``port``..``port + processes - 1``."""
    return {
        "metrics.reporter.prom.factory.class": PROMETHEUS_FACTORY,
        "metrics.reporter.prom.port": f"{port}-{port + max(processes, 1) - 1}",
    }


def write_config(
    base_dir: Path | str | None = None,
    rest_port: int = 8081,
    slots: int = 2,
    rpc_port: int | None = None,
    jobmanager_memory: str = "1024m",
    taskmanager_memory: str = "2048m",
    metrics_port: int | None = None,
    extra: dict | None = None,
    taskmanagers: int = 1,
) -> Path:
    """Write ``conf/`` (config.yaml, log4j files, masters, workers); returns the conf dir.

    ``metrics_port``: export metrics to Prometheus on that port and the next ones, one per
    process (None: off)."""
    import yaml

    base, conf, log, pid = _dirs(base_dir)
    for d in (conf, log, pid):
        d.mkdir(parents=True, exist_ok=True)
    shipped = flink_home() / "conf"
    for f in shipped.iterdir():
        if f.suffix in (".properties", ".xml"):
            shutil.copyfile(f, conf / f.name)
    cfg = yaml.safe_load((shipped / "config.yaml").read_text()) or {}
    rpc_port = rpc_port or free_port()
    settings = {
        "jobmanager.rpc.address": "localhost",
        "jobmanager.rpc.port": rpc_port,
        "jobmanager.bind-host": "localhost",
        "jobmanager.memory.process.size": jobmanager_memory,
        "taskmanager.host": "localhost",
        "taskmanager.bind-host": "localhost",
        "taskmanager.numberOfTaskSlots": slots,
        "taskmanager.memory.process.size": taskmanager_memory,
        "rest.address": "localhost",
        "rest.bind-address": "localhost",
        "rest.port": rest_port,
        "parallelism.default": 1,
        # the TaskManager starts alongside the JobManager: retry registering every second, not 10
        "cluster.registration.error-delay": "1 s",
        # Python UDF workers and the `flink run -py` client use this interpreter (the venv)
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        # thread mode: the interpreter embedded in the TaskManager needs the venv's packages
        "python.pythonpath": paths.worker_python_path(sys.executable),
        "env.log.dir": str(log),
        "env.pid.dir": str(pid),
        "io.tmp.dirs": str(base / "tmp"),
        "web.tmpdir": str(base / "tmp"),
    }
    if metrics_port:
        settings.update(metrics_settings(metrics_port, 1 + taskmanagers))
    settings.update(extra or {})
    for k, v in settings.items():
        _set(cfg, k, v)
    (base / "tmp").mkdir(exist_ok=True)
    (conf / "config.yaml").write_text(
        "# written by streamrec.flink_cluster from the wheel's conf/config.yaml\n"
        + yaml.safe_dump(cfg, sort_keys=False, width=1 << 16)
    )
    (conf / "masters").write_text(f"localhost:{rest_port}\n")
    (conf / "workers").write_text("localhost\n")
    state = {"rest_port": rest_port, "rpc_port": rpc_port, "slots": slots}
    if metrics_port:
        state["metrics_ports"] = list(range(metrics_port, metrics_port + 1 + taskmanagers))
    (base / STATE_FILE).write_text(json.dumps(state))
    return conf


def _state(base_dir: Path | str | None) -> dict:
    base = _dirs(base_dir)[0]
    try:
        return json.loads((base / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def address(base_dir: Path | str | None = None) -> str:
    """``"localhost:REST_PORT"`` of the cluster configured in ``base_dir``."""
    return f"localhost:{_state(base_dir).get('rest_port', 8081)}"


def cluster_env(base_dir: Path | str | None = None) -> dict[str, str]:
    """Environment for ``bin/flink`` (``flink run``, ``flink list``, ...) against this cluster."""
    _, conf, log, pid = _dirs(base_dir)
    env = dict(os.environ)
    env.update(
        FLINK_HOME=str(flink_home()),
        FLINK_CONF_DIR=str(conf),
        FLINK_LOG_DIR=str(log),
        FLINK_PID_DIR=str(pid),
        FLINK_IDENT_STRING=IDENT,
        PYFLINK_CLIENT_EXECUTABLE=sys.executable,
    )
    if paths.prometheus_reporter_jars():  # the reporter resolved by deploy/pom.xml
        env["FLINK_PLUGINS_DIR"] = str(paths.flink_plugins_dir())
    return env


def _pids(base_dir, daemon: str) -> list[int]:
    pid_file = _dirs(base_dir)[3] / f"flink-{IDENT}-{daemon}.pid"
    try:
        return [int(x) for x in pid_file.read_text().split()]
    except (OSError, ValueError):
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def running_pids(base_dir: Path | str | None = None) -> dict[str, list[int]]:
    """``{"standalonesession": [pid], "taskexecutor": [pid]}``: the daemons that are alive."""
    return {d: [p for p in _pids(base_dir, d) if _alive(p) and _is_flink(p, d)] for d in DAEMONS}


_ENTRYPOINTS = {
    "standalonesession": "StandaloneSessionClusterEntrypoint",
    "taskexecutor": "TaskManagerRunner",
}


def _is_flink(pid: int, daemon: str) -> bool:
    """Guard against a recycled pid: the process must run that daemon's entry point."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid file
    return _ENTRYPOINTS[daemon].encode() in cmdline


def rest_call(rest: str, path: str, method: str = "GET", timeout: float = 10.0):
    """One call of the REST API at ``rest`` (host:port): the answer's JSON, None for an empty
    body. Raises OSError (no answer, an HTTP error) or ValueError (not JSON)."""
    req = urllib.request.Request(f"http://{rest}{path}", method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = r.read()
    return json.loads(body) if body else None


def overview(rest: str, timeout: float = 2.0) -> dict | None:
    """The REST API's ``/overview`` (taskmanagers, slots, jobs), or None if it does not answer."""
    with contextlib.suppress(OSError, ValueError):
        return rest_call(rest, "/overview", timeout=timeout)
    return None


def taskmanager_ids(rest: str, timeout: float = 2.0) -> set[str] | None:
    """Ids of the TaskManagers registered now (REST ``/taskmanagers``), None if no answer."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
        got = rest_call(rest, "/taskmanagers", timeout=timeout)
        return {tm["id"] for tm in got.get("taskmanagers", [])}
    return None


def _logs_tail(base_dir, lines: int = 30) -> str:
    log = _dirs(base_dir)[2]
    out = []
    for f in sorted(log.glob("flink-*.log")) + sorted(log.glob("flink-*.out")):
        text = f.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"--- {f} (tail) ---\n" + "\n".join(text))
    return "\n".join(out) or f"(no logs in {log})"


def start(
    rest_port: int = 8081,
    slots: int = 2,
    base_dir: Path | str | None = None,
    timeout: float = 120,
    taskmanagers: int = 1,
    **config,
) -> str:
    """Start a JobManager and ``taskmanagers`` TaskManagers of ``slots`` slots each; wait until
    they have registered.

    Returns ``"localhost:REST_PORT"``. If this cluster already runs, returns its address.
    ``config`` goes to :func:`write_config` (``rpc_port``, ``jobmanager_memory``,
    ``taskmanager_memory``, ``metrics_port``, ``extra``). PyFlink's thread mode runs one Python
    interpreter per TaskManager JVM (one GIL for all its slots): scale it with TaskManagers of
    one slot.
    """
    alive = running_pids(base_dir)
    if any(alive.values()):
        rest = address(base_dir)
        ov = overview(rest)
        if ov and ov.get("taskmanagers", 0) >= 1 and int(rest.rsplit(":", 1)[1]) == rest_port:
            return rest
        raise ClusterError(
            f"a Flink cluster from {_dirs(base_dir)[0]} is already (partly) running "
            f"({alive}, REST {rest}); run `streamrec cluster stop` first"
        )
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", rest_port))
        except OSError:
            raise ClusterError(f"REST port {rest_port} is already in use") from None
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise ClusterError("no `java` found (set JAVA_HOME or put a JDK 17+ on PATH)")
    write_config(base_dir, rest_port=rest_port, slots=slots, taskmanagers=taskmanagers, **config)
    rest = f"localhost:{rest_port}"
    t0 = time.monotonic()
    # both scripts at once (each spends seconds parsing the config in a JVM); the TaskManager
    # retries until the JobManager is up
    names = ["jobmanager.sh"] + ["taskmanager.sh"] * taskmanagers
    procs = [(name, _daemon_script(name, base_dir)) for name in names]
    for name, proc in procs:
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            stop(base_dir)
            raise ClusterError(f"{name} start failed:\n{out}\n{_logs_tail(base_dir)}")
    deadline = time.monotonic() + timeout
    while True:
        ov = overview(rest)
        if (
            ov
            and ov.get("taskmanagers", 0) >= taskmanagers
            and ov.get("slots-total", 0) >= slots * taskmanagers
        ):
            break
        # plain liveness here: right after the scripts return, a daemon's pid can still be the
        # forked shell that has not exec'd java yet, which _is_flink would take for a stranger
        dead = [d for d in DAEMONS if not any(_alive(p) for p in _pids(base_dir, d))]
        if dead or time.monotonic() > deadline:
            why = f"{', '.join(dead)} exited" if dead else f"not ready within {timeout:.0f}s"
            tail = _logs_tail(base_dir)
            stop(base_dir)
            raise ClusterError(f"the Flink cluster did not start ({why})\n{tail}")
        time.sleep(0.5)
    print(
        f"cluster: Flink up at http://{rest} (1 JobManager, {taskmanagers} TaskManager(s) of "
        f"{slots} slots, {time.monotonic() - t0:.1f}s, logs {_dirs(base_dir)[2]})",
        file=sys.stderr,
    )
    return rest


def _daemon_script(name: str, base_dir) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", str(flink_home() / "bin" / name), "start"],
        env=cluster_env(base_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def add_taskmanager(base_dir: Path | str | None = None, timeout: float = 120) -> None:
    """Start one more TaskManager (e.g. after one was killed) and wait until it registered."""
    rest = address(base_dir)
    # by id, not by count: a killed TaskManager may leave the list while the new one registers
    before = taskmanager_ids(rest) or set()
    proc = _daemon_script("taskmanager.sh", base_dir)
    out, _ = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise ClusterError(f"taskmanager.sh start failed:\n{out}")
    deadline = time.monotonic() + timeout
    while not (taskmanager_ids(rest) or set()) - before:
        if time.monotonic() > deadline:
            raise ClusterError(f"the new TaskManager did not register\n{_logs_tail(base_dir)}")
        time.sleep(0.3)


def stop(base_dir: Path | str | None = None, timeout: float = 60) -> bool:
    """Stop the TaskManager and the JobManager: SIGTERM, SIGKILL after ``timeout`` s.

    Returns True if something was running. Idempotent.
    """
    was = any(running_pids(base_dir).values())
    if not was:
        return False
    # what the wheel's `jobmanager.sh stop` does (guaranteed_kill), minus its JVM-based config
    # parsing: SIGTERM to both daemons at once (Flink halts a JVM 5 s after SIGTERM)
    for pids in running_pids(base_dir).values():
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(running_pids(base_dir).values()):
        if time.monotonic() > deadline:
            for pids in running_pids(base_dir).values():
                for p in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
            break
        time.sleep(0.2)
    for d in DAEMONS:
        (_dirs(base_dir)[3] / f"flink-{IDENT}-{d}.pid").unlink(missing_ok=True)
    return True


def status(base_dir: Path | str | None = None) -> dict:
    rest = address(base_dir)
    pids = running_pids(base_dir)
    return {
        "running": any(pids.values()),
        "pids": pids,
        "rest": rest,
        "overview": overview(rest) if any(pids.values()) else None,
        "log_dir": str(_dirs(base_dir)[2]),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="streamrec cluster",
        description="a local standalone Flink cluster from the PyFlink wheel",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    for name in ("start", "stop", "status", "env"):
        p = sub.add_parser(name)
        p.add_argument("--base-dir", type=Path, default=default_base_dir(), help="conf, logs, pids")
        if name == "start":
            p.add_argument("--rest-port", type=int, default=8081)
            p.add_argument("--slots", type=int, default=2, help="slots per TaskManager")
            p.add_argument(
                "--taskmanagers",
                type=int,
                default=1,
                help="TaskManagers (thread mode: one Python interpreter each; use --slots 1)",
            )
            p.add_argument("--jobmanager-memory", default="1024m")
            p.add_argument("--taskmanager-memory", default="2048m")
            p.add_argument("--timeout", type=float, default=120)
            p.add_argument(
                "--metrics-port",
                type=int,
                default=0,
                help="Prometheus metrics on this port and the next (JobManager, TaskManager); "
                "0: off (default)",
            )
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            print(
                start(
                    args.rest_port,
                    args.slots,
                    args.base_dir,
                    args.timeout,
                    taskmanagers=args.taskmanagers,
                    jobmanager_memory=args.jobmanager_memory,
                    taskmanager_memory=args.taskmanager_memory,
                    metrics_port=args.metrics_port or None,
                )
            )
        elif args.action == "stop":
            print("stopped" if stop(args.base_dir) else "not running")
        elif args.action == "env":  # eval "$(streamrec cluster env)" before calling bin/flink
            env = cluster_env(args.base_dir)
            for k in ("FLINK_HOME", "FLINK_CONF_DIR", "FLINK_LOG_DIR", "FLINK_PID_DIR",
                      "FLINK_IDENT_STRING", "PYFLINK_CLIENT_EXECUTABLE", "FLINK_PLUGINS_DIR"):  # fmt: skip
                if k in env:
                    print(f"export {k}={env[k]}")
            print(f"export FLINK_BIN={flink_bin()}")
        else:
            st = status(args.base_dir)
            ov = st["overview"] or {}
            if st["running"]:
                print(
                    f"running  rest=http://{st['rest']}  taskmanagers={ov.get('taskmanagers', '?')}"
                    f"  slots={ov.get('slots-available', '?')}/{ov.get('slots-total', '?')}"
                    f"  jobs running={ov.get('jobs-running', '?')}  pids={st['pids']}"
                )
            else:
                print(f"stopped  (logs {st['log_dir']})")
            return 0 if st["running"] else 3
    except ClusterError as e:
        print(f"streamrec cluster {args.action}: {e}", file=sys.stderr)
        return 1
    return 0
