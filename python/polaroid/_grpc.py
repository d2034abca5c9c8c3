"""Made before grpc is first imported in the process: grpc's client polls its sockets on
the thread that waits for a call, instead of on its event-engine threads.

With grpc's default (the `event_engine_client` experiment, on in grpcio 1.85), every call crosses
threads twice: the calling thread hands its request to an event-engine thread and sleeps
on a futex until another one hands the reply back. On the benchmark's 2-vCPU VM each
such wake costs tens of µs. Turned off, a unary call makes one `sendmsg`, one
`epoll_wait` and one `recvmsg` on the calling thread (`strace -f -c`, 2,000 health
checks: 160 futex calls in all, against 12,670, and no eventfd writes); it took 336
against 454 µs at p50 and 186 against 239 µs of the client's CPU (two processes run
alternately, eight times each, against a lone debug worker while Rust builds ran). Through
the SDK against a debug standalone, alternately eight times: the trivial call 1,335
against 1,378 µs at p50, head(5).collect() 1,682 against 1,758 µs, 50-80 µs less client
CPU per call. grpc reads `GRPC_EXPERIMENTS` once, when it is imported, so the variable is
set only for that import and the environment is left as it was: child processes are
unaffected. A grpc that no longer knows the experiment logs "Unknown experiment" once at
import and runs as by default (python/tests/test_grpc_setup.py then fails).

Left alone: a process that imported grpc before polaroid (its calls still work, at
grpc's default speed), and one whose environment sets `GRPC_EXPERIMENTS` itself (an
empty value keeps all of grpc's defaults). The setting is the process's: other gRPC
clients in it (not pyarrow's Flight client, which has a gRPC of its own) poll the same
way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

VARIABLE = "GRPC_EXPERIMENTS"
#: What the SDK imports grpc with.
EXPERIMENTS = "-event_engine_client"


def import_grpc(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Imports grpc with the client polling on calling threads; returns whether the
    setting was made (False when grpc was imported already or the user set it)."""
    if "grpc" in sys.modules or VARIABLE in environ:
        return False
    environ[VARIABLE] = EXPERIMENTS
    try:
        import grpc  # noqa: F401
    finally:
        environ.pop(VARIABLE, None)
    return True


IMPORTED_WITH_SETTING = import_grpc()
