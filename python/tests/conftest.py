"""Real servers for the SDK tests: `polaroid standalone`, and a coordinator with three
worker processes on a shared store (for the resilience tests), on ephemeral loopback
ports. Built by `cargo build` beforehand; POLAROID_BIN names the binary."""

from __future__ import annotations

import os
import pathlib
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def polaroid_binary() -> pathlib.Path:
    explicit = os.environ.get("POLAROID_BIN")
    if explicit:
        return pathlib.Path(explicit)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "polaroid"


class Process:
    """A `polaroid <role>` process; its addresses are read from its first two lines."""

    def __init__(self, role: str, *args: str, env: dict[str, str] | None = None) -> None:
        binary = polaroid_binary()
        assert binary.exists(), f"{binary} not built; run cargo build first"
        command = [str(binary), role, "--http-address", "127.0.0.1:0"]
        if "--bind" not in args:
            command += ["--bind", "127.0.0.1:0"]
        self.process = subprocess.Popen(
            [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().strip().rsplit(" ", 1)[-1]
        self.http = self.process.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert self.address and self.http, f"{role} did not start"

    def wait_ready(self, timeout: float = 30.0, ca_file: str | None = None) -> None:
        """Waits for `/readyz`; over TLS trusting `ca_file` when given."""
        deadline = time.monotonic() + timeout
        scheme, context = ("https", ssl.create_default_context(cafile=ca_file)) if ca_file else ("http", None)
        while True:
            try:
                with urllib.request.urlopen(f"{scheme}://{self.http}/readyz", timeout=2, context=context) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, f"{self.address} not ready"
            time.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def data_root() -> Iterator[pathlib.Path]:
    with tempfile.TemporaryDirectory(prefix="polaroid-sdk-data-") as root:
        yield pathlib.Path(root)


@pytest.fixture(scope="session")
def standalone(data_root: pathlib.Path) -> Iterator[Process]:
    with tempfile.TemporaryDirectory(prefix="polaroid-sdk-state-") as state:
        server = Process("standalone", "--data-root", str(data_root), "--state-dir", state)
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()


class Cluster:
    """A coordinator and three workers sharing a filesystem store."""

    def __init__(self, data_root: pathlib.Path, state: str, *worker_args: str) -> None:
        self.coordinator = Process(
            "coordinator", "--worker-lease-secs", "2", "--membership-refresh-secs", "0.2"
        )
        self.worker_args = [
            "--coordinator-url", f"http://{self.coordinator.address}",
            "--load-report-interval-secs", "0.3",
            "--handle-store", "external", "--state-dir", state,
            "--data-root", str(data_root), *worker_args,
        ]
        self.workers = [Process("worker", *self.worker_args) for _ in range(3)]
        self.coordinator.wait_ready()

    @property
    def address(self) -> str:
        return self.coordinator.address

    def replace(self, dead: Process) -> None:
        """Starts a worker in the place of `dead`, so later tests have three again."""
        self.workers.remove(dead)
        fresh = Process("worker", *self.worker_args)
        self.workers.append(fresh)
        fresh.wait_ready()

    def stop(self) -> None:
        for process in [*self.workers, self.coordinator]:
            process.stop()


@pytest.fixture(scope="session")
def cluster(data_root: pathlib.Path) -> Iterator[Cluster]:
    with tempfile.TemporaryDirectory(prefix="polaroid-sdk-cluster-") as state:
        running = Cluster(data_root, state, "--max-result-rows", "100000")
        try:
            yield running
        finally:
            running.stop()
