"""How ``streamrec bench job`` starts and stops each kind of variant (see benchmarks.variants).

- :class:`LocalLauncher`: a process group, ``python -m jobs.recommend FLAGS`` (the mini-cluster),
  or any command taking the job's flags (the reference loop); :func:`old_checkout` gives the
  folder and environment that run the job as of an older commit;
- :class:`ClusterLauncher`: ``flink run -d -py jobs/recommend.py FLAGS`` on a local standalone
  cluster (:mod:`streamrec.flink_cluster`) it starts on first use and stops on close.

Each start returns a :class:`JobHandle`: whether the job has failed (with its log tail), how to
stop it (a local job optionally with a savepoint), and which processes hold its memory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from streamrec import paths
from streamrec.flink_cluster import overview, rest_call


class LaunchError(RuntimeError):
    pass


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class JobHandle:
    """A started job. ``failure()`` is None while it runs."""

    log_path: Path

    def failure(self) -> str | None:
        raise NotImplementedError

    def stop(self, savepoint: bool = False, timeout: float = 60) -> str | None:
        """Stop it; with ``savepoint`` (local jobs), return the savepoint's path."""
        raise NotImplementedError

    def memory_roots(self) -> tuple[list[int], int | None, str | None]:
        """(root pids, the driver's pid or None, a role for the roots or None): see
        benchmarks.memory.rss_by_role."""
        raise NotImplementedError


class ProcessHandle(JobHandle):
    def __init__(self, proc: subprocess.Popen, log_path: Path, log_file, role: str | None):
        self.proc = proc
        self.log_path = log_path
        self._log = log_file
        self.role = role

    def failure(self) -> str | None:
        if self.proc.poll() is None:
            return None
        return (
            f"exited with code {self.proc.returncode}; log {self.log_path}:\n{tail(self.log_path)}"
        )

    def stop(self, savepoint: bool = False, timeout: float = 60) -> str | None:
        """SIGTERM to the driver alone when a savepoint is wanted (``streamrec run`` then stops
        the job with one and prints its path), else to the whole group; SIGKILL after
        ``timeout`` seconds."""
        proc = self.proc
        try:
            if proc.poll() is None:
                if savepoint:
                    os.kill(proc.pid, signal.SIGTERM)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15 if savepoint else timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            # the group may outlive its leader (the JVM): end what is left of it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        finally:
            self._log.close()
        if savepoint:
            found = re.findall(
                r"^savepoint: (\S+)$", self.log_path.read_text(errors="replace"), re.M
            )
            return found[-1] if found else None
        return None

    def memory_roots(self) -> tuple[list[int], int | None, str | None]:
        if self.proc.poll() is not None:
            return [], None, None
        driver = None if self.role else self.proc.pid
        return [self.proc.pid], driver, self.role


class LocalLauncher:
    """Runs ``command + flags`` in ``cwd`` with ``env`` as its own process group.

    ``role``: the memory role of the process itself (``"loop"``), None for a job driver."""

    def __init__(
        self,
        command: list[str],
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        role: str | None = None,
    ):
        self.command = list(command)
        self.cwd = cwd or paths.PROJECT_ROOT
        self.env = env
        self.role = role

    def prepare(self) -> None:
        """Nothing to set up before the clock starts."""

    def start(self, flags: list[str], log_path: Path) -> ProcessHandle:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.command + list(flags)
        log = log_path.open("ab")
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return ProcessHandle(proc, log_path, log, self.role)

    def close(self) -> None:
        pass


def new_job() -> LocalLauncher:
    """This checkout's job on the local mini-cluster."""
    return LocalLauncher([sys.executable, "-m", "jobs.recommend"])


def reference_loop() -> LocalLauncher:
    return LocalLauncher([sys.executable, "-m", "benchmarks.reference_loop"], role="loop")


@contextlib.contextmanager
def old_checkout(commit: str) -> Iterator[Path]:
    """A temporary ``git worktree`` of this repository at ``commit``; removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-old-{commit[:8]}-", dir=paths.runtime_dir()))
    tmp.rmdir()
    repo = str(paths.PROJECT_ROOT)
    add = subprocess.run(
        ["git", "-C", repo, "worktree", "add", "--detach", str(tmp), commit],
        capture_output=True,
        text=True,
    )
    if add.returncode != 0:
        raise LaunchError(f"git worktree add {commit} failed: {add.stderr.strip()}")
    try:
        yield tmp
    finally:
        subprocess.run(
            ["git", "-C", repo, "worktree", "remove", "--force", str(tmp)], capture_output=True
        )
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "-C", repo, "worktree", "prune"], capture_output=True)


def old_job(checkout: Path) -> LocalLauncher:
    """The job of an older checkout, with this venv, this checkout's caches (jars, models) and
    runtime folder, and only the old checkout on the Python path."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(checkout),
        STREAMREC_CACHE=str(paths.cache_dir()),
        STREAMREC_RUNTIME=str(paths.runtime_dir()),
    )
    return LocalLauncher([sys.executable, "-m", "jobs.recommend"], cwd=checkout, env=env)


# ---- standalone cluster ----------------------------------------------------------------------
FINAL_STATES = {"FAILED", "CANCELED", "FINISHED", "SUSPENDED"}


class ClusterHandle(JobHandle):
    def __init__(self, launcher: ClusterLauncher, job_id: str, log_path: Path):
        self.launcher = launcher
        self.job_id = job_id
        self.log_path = log_path
        self._checked = 0.0
        self._state = "RUNNING"

    def state(self) -> str:
        try:
            return rest_call(self.launcher.rest, f"/jobs/{self.job_id}")["state"]
        except (OSError, KeyError, TypeError, ValueError):
            return "UNKNOWN"

    def failure(self) -> str | None:
        now = time.monotonic()
        if now - self._checked >= 2.0:
            self._checked = now
            self._state = self.state()
        if self._state not in FINAL_STATES:
            return None
        why = ""
        with contextlib.suppress(OSError, KeyError, ValueError, AttributeError):
            exc = rest_call(self.launcher.rest, f"/jobs/{self.job_id}/exceptions")
            entries = (exc.get("exceptionHistory") or {}).get("entries") or []
            if entries:
                why = entries[0].get("stacktrace") or entries[0].get("exceptionName") or ""
            why = (why or exc.get("root-exception") or "")[:3000]
        return (
            f"job {self.job_id} is {self._state} on the cluster\n{why}\n{self.launcher.logs_tail()}"
        )

    def stop(self, savepoint: bool = False, timeout: float = 60) -> str | None:
        if savepoint:
            raise LaunchError("the benchmark only restores local jobs")
        rest = self.launcher.rest
        with contextlib.suppress(OSError, ValueError):
            rest_call(rest, f"/jobs/{self.job_id}?mode=cancel", method="PATCH")
        deadline = time.monotonic() + timeout
        while self.state() not in FINAL_STATES | {"UNKNOWN"} and time.monotonic() < deadline:
            time.sleep(0.5)
        # the slots must be free for the next submission
        while time.monotonic() < deadline:
            ov = overview(rest) or {}
            if ov.get("slots-available") == ov.get("slots-total"):
                break
            time.sleep(0.5)
        return None

    def memory_roots(self) -> tuple[list[int], int | None, str | None]:
        from streamrec import flink_cluster

        return flink_cluster.running_pids(self.launcher.base_dir)["taskexecutor"], None, None


class ClusterLauncher:
    """A standalone cluster of ``taskmanagers`` TaskManagers with ``slots`` slots each; jobs go
    to it with ``flink run -d -py``.

    Every job gets a fresh cluster (started by :meth:`start`, stopped by the next start or by
    :meth:`close`; its logs are kept beside the job's log): in thread mode a TaskManager that
    has run one Python job fails the next one (PEMJA cannot load its native library into a
    second job's class loader on Java 17: ``NoSuchFieldException: loadedLibraryNames``).
    """

    def __init__(self, taskmanagers: int = 2, slots: int = 1, memory: str = "2048m"):
        self.taskmanagers = taskmanagers
        self.slots = slots
        self.memory = memory
        self.base_dir: Path | None = None
        self.rest: str | None = None
        self._logs_to: Path | None = None
        self.used = False  # a job ran on the current cluster

    def prepare(self) -> None:
        """A fresh cluster, before a job's clock starts (see the class doc)."""
        self.close()
        self._start()

    def _start(self) -> None:
        from streamrec import flink_cluster, ports

        self.base_dir = Path(tempfile.mkdtemp(prefix="bench-cluster-", dir=paths.runtime_dir()))
        try:
            self.rest = flink_cluster.start(
                ports.free_port(),
                slots=self.slots,
                base_dir=self.base_dir,
                timeout=240,
                taskmanagers=self.taskmanagers,
                taskmanager_memory=self.memory,
            )
        except flink_cluster.ClusterError as e:
            raise LaunchError(str(e)) from None

    def start(self, flags: list[str], log_path: Path) -> ClusterHandle:
        from streamrec import flink_cluster

        if self.used or self.rest is None:
            self.prepare()
        self.used = True
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._logs_to = log_path.parent / "cluster-logs"
        cmd = [str(flink_cluster.flink_bin()), "run", "-m", self.rest, "-d", "-py"]
        cmd += ["jobs/recommend.py", *flags]
        sub = subprocess.run(
            cmd,
            cwd=paths.PROJECT_ROOT,
            env=flink_cluster.cluster_env(self.base_dir),
            capture_output=True,
            text=True,
            timeout=600,
        )
        out = sub.stdout + sub.stderr
        log_path.write_text("$ " + " ".join(cmd) + "\n" + out)
        job_id = re.search(r"JobID ([0-9a-f]{32})", out)
        if sub.returncode != 0 or not job_id:
            raise LaunchError(f"flink run failed (exit {sub.returncode}):\n{out[-3000:]}")
        return ClusterHandle(self, job_id.group(1), log_path)

    def logs_tail(self, n: int = 30) -> str:
        if self.base_dir is None:
            return ""
        logs = sorted((self.base_dir / "log").glob("flink-*taskexecutor*.log"))
        return "\n".join(f"--- {p.name} ---\n{tail(p, n)}" for p in logs)

    def close(self) -> None:
        """Stop the cluster; its logs go beside the last job's log."""
        if self.base_dir is None:
            return
        from streamrec import flink_cluster

        flink_cluster.stop(self.base_dir)
        if self._logs_to is not None:
            shutil.copytree(self.base_dir / "log", self._logs_to, dirs_exist_ok=True)
        shutil.rmtree(self.base_dir, ignore_errors=True)
        self.base_dir = self.rest = None
        self.used = False
