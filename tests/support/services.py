"""Real PostgreSQL and Redis servers for tests and benchmarks: the launcher of the local platform.

The code is ``files/local/services.py`` (standard library only; ``files/local/supervisor.py`` starts the local
platform's PostgreSQL and Redis with it). Here it is loaded by path and re-exported, with one test default:
PostgreSQL runs with fsync and synchronous commit off, as test data is thrown away.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "files" / "local" / "services.py"
_NAME = "litemaas_local_services"

if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, _PATH)
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _module
    _spec.loader.exec_module(_module)
shared = sys.modules[_NAME]

ServiceError = shared.ServiceError
RedisServer = shared.RedisServer
free_port = shared.free_port
log_tail = shared.log_tail
pg_bin = shared.pg_bin
port_open = shared.port_open
process_alive = shared.process_alive
stop_process = shared.stop_process
wait_for_port = shared.wait_for_port


class PostgresServer(shared.PostgresServer):
    """``files/local/services.py``'s PostgreSQL, not durable by default (test data is thrown away)."""

    def __init__(self, data_dir, port: int | None = None, user: str = "postgres", **options):
        options.setdefault("durable", False)
        super().__init__(data_dir, port=port, user=user, **options)


__all__ = ["PostgresServer", "RedisServer", "ServiceError", "free_port", "log_tail", "pg_bin", "port_open", "process_alive",
           "stop_process", "wait_for_port"]


def stop_all(started: list, warn) -> None:
    """Stop what was started, last first (benchmarks' clean-up). One that fails to stop is reported through
    ``warn(message)`` and the rest are still stopped."""
    for thing in reversed(started):
        try:
            thing.stop()
        except Exception as exc:  # keep stopping the others
            warn(f"could not stop {thing!r}: {exc}")
