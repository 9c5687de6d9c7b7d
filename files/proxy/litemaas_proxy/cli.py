"""Command line: ``litemaas-proxy --host H --port P [--config FILE] [--workers N]``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import threading
from typing import Optional

from aiohttp import web

from litemaas_proxy import __version__
from litemaas_proxy.accesslog import AccessLogger
from litemaas_proxy.app import CLOSE_TIMEOUT, create_app
from litemaas_proxy.config import load_settings
from litemaas_proxy.metrics import Worker, worker_group


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a hard dependency on Linux
        return
    uvloop.install()


# Seconds in-flight requests get to finish after SIGTERM (streams included) before they are cancelled.
SHUTDOWN_DRAIN_TIMEOUT = 15.0
# Startup runs to its end before a stop is acted on (it waits at most 5 s for the database, then goes on in the background).
STARTUP_ALLOWANCE = 5.0
# Exit status of a worker that was still running past its shutdown budget and ended itself.
SHUTDOWN_OVERRAN_STATUS = 70
# Cyclic garbage collection while serving. The objects made by the start (modules, the app, settings: ~45,000) are
# moved out of the collector's reach once serving begins, and young objects are collected every 2,000 allocations
# instead of 700. A workshop burst (1,000 streams set up at once) then triggers no full collection: measured with the
# defaults, each burst met full collections of ~120,000 objects pausing every request for 60-75 ms.
GC_THRESHOLDS = (2000, 10, 10)

log = logging.getLogger("litemaas_proxy")

# SIGTERM/SIGINT that arrive before the event loop handles them (a worker still starting, the parent between forks)
# are remembered here and acted on once it does, so a stop is never lost.
_early_signals: list = []


def _remember_signal(signum, _frame) -> None:
    _early_signals.append(signum)


def shutdown_budget(settings) -> float:
    """Seconds from SIGTERM to exit, whatever PostgreSQL and Redis do: startup finishing, in-flight requests
    draining, the final spend flush, then CLOSE_TIMEOUT each for background tasks, upstream, Redis, database and
    whatever task is left when the event loop closes."""
    return STARTUP_ALLOWANCE + SHUTDOWN_DRAIN_TIMEOUT + settings.shutdown_flush_timeout + 5 * CLOSE_TIMEOUT


class _Lifecycle:
    """Serve until SIGTERM/SIGINT, then stop gracefully. The signal only sets an event: it never interrupts startup
    or the stop half-way (an exception raised into startup can be swallowed, leaving a worker serving after its stop).
    A watchdog started with the stop ends the process if, against every bound above, it is still running."""

    def __init__(self, budget: float, backlog: int):
        self.budget = budget
        self.backlog = backlog
        self.stopping = asyncio.Event()
        self.watchdog = None

    def stop(self, signum: int) -> None:
        if self.watchdog is not None:
            return
        log.info("%s received: stopping", signal.Signals(signum).name)
        self.stopping.set()
        self.watchdog = threading.Timer(self.budget, self._overran, (self.budget,))
        self.watchdog.daemon = True
        self.watchdog.start()

    @staticmethod
    def _overran(budget: float) -> None:
        log.critical("still running %.0fs after the stop signal, past the shutdown budget: exiting now", budget)
        logging.shutdown()
        os._exit(SHUTDOWN_OVERRAN_STATUS)

    async def run(self, app, sock, access: dict) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop, signum)
        for signum in _early_signals:
            self.stop(signum)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_DRAIN_TIMEOUT, keepalive_timeout=75.0, **access)
        try:
            await runner.setup()
            if not self.stopping.is_set():
                # aiohttp listens on the socket again with its own backlog (128 unless told): pass ours, or a burst of
                # connections overflows the accept queue and every dropped SYN costs its client a 1-15 s retransmit.
                await web.SockSite(runner, sock, backlog=self.backlog).start()
                gc.freeze()
                gc.set_threshold(*GC_THRESHOLDS)
                await self.stopping.wait()
        finally:
            await runner.cleanup()


def _close_loop(loop) -> None:
    """Cancel what is left (a task that ignores cancellation is not waited for past CLOSE_TIMEOUT) and close the loop."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    ending = [loop.create_task(loop.shutdown_asyncgens())] + tasks
    loop.run_until_complete(asyncio.wait(ending, timeout=CLOSE_TIMEOUT))
    loop.close()


def _serve(args, sock: socket.socket, worker: Optional[Worker] = None) -> None:
    _install_uvloop()
    settings = load_settings(args.config)
    if not settings.master_key:
        log.warning("LITELLM_MASTER_KEY is not set: every request is accepted as proxy admin")
    app = create_app(settings, worker)
    access = {"access_log": None}
    if settings.access_log:
        access = {"access_log": logging.getLogger("litemaas_proxy.access"), "access_log_class": AccessLogger}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_Lifecycle(shutdown_budget(settings), settings.listen_backlog).run(app, sock, access))
    finally:
        _close_loop(loop)


def _bind(host: str, port: int, reuse_port: bool, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port and hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="litemaas-proxy", description="OpenAI-compatible gateway with LiteLLM's management API")
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "4000")))
    parser.add_argument("--config", default=os.environ.get("CONFIG_FILE_PATH"), help="LiteLLM-style config.yaml (model_list, ...)")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("NUM_WORKERS", "1")), help="worker processes sharing the port")
    parser.add_argument("--log-level", default=os.environ.get("LITELLM_LOG", "INFO"))
    parser.add_argument("--version", action="version", version=f"litemaas-proxy {__version__}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    settings = load_settings(args.config)  # fail fast on a broken config before forking
    signal.signal(signal.SIGTERM, _remember_signal)
    signal.signal(signal.SIGINT, _remember_signal)
    sock = _bind(args.host, args.port, reuse_port=False, backlog=settings.listen_backlog)
    if args.workers <= 1:
        _serve(args, sock)
        return 0
    # A signal that reaches a new worker before its interpreter has finished forking is dropped (the child forgets
    # signals caught but not yet handled). Stop signals are blocked over the forks, so one sent meanwhile (to the
    # parent, or forwarded to a worker) waits in the kernel and is delivered when each process unblocks it.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    children = []
    group = worker_group()  # the workers find each other to report the pod's metrics
    for index in range(args.workers):
        pid = os.fork()
        if pid == 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
            status = 1
            try:
                _serve(args, sock, Worker(group, index, args.workers))
                status = 0
            except Exception:
                log.exception("worker stopped on an error")
            finally:
                logging.shutdown()
                os._exit(status)
        children.append(pid)
    sock.close()

    def forward(signum, _frame):
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for signum in _early_signals:
        forward(signum, None)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    status = 0
    for child in children:
        while True:
            try:
                dummy, code = os.waitpid(child, 0)
                status = status or os.waitstatus_to_exitcode(code)
                break
            except InterruptedError:
                continue
    return status


if __name__ == "__main__":
    raise SystemExit(main())
