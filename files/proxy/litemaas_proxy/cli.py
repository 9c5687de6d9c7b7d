"""Command line: ``litemaas-proxy --host H --port P [--config FILE] [--workers N]``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys

from aiohttp import web

from litemaas_proxy import __version__
from litemaas_proxy.accesslog import AccessLogger
from litemaas_proxy.app import create_app
from litemaas_proxy.config import load_settings


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a hard dependency on Linux
        return
    uvloop.install()


# Seconds in-flight requests get to finish after SIGTERM (streams included) before they are cancelled.
SHUTDOWN_DRAIN_TIMEOUT = 15.0

# SIGTERM/SIGINT that arrive before the server's own handlers exist (a worker still starting, the parent
# between forks) are remembered here and replayed once the server handles them, so a stop is always graceful.
_early_signals: list = []


def _remember_signal(signum, _frame) -> None:
    _early_signals.append(signum)


async def _replay_early_signals(_app) -> None:
    # aiohttp installs its signal handlers before the startup hooks run: re-sending reaches them.
    for signum in _early_signals:
        os.kill(os.getpid(), signum)


def _serve(args, sock: socket.socket) -> None:
    _install_uvloop()
    settings = load_settings(args.config)
    if not settings.master_key:
        logging.getLogger("litemaas_proxy").warning("LITELLM_MASTER_KEY is not set: every request is accepted as proxy admin")
    app = create_app(settings)
    app.on_startup.insert(0, _replay_early_signals)
    access = {"access_log": None}
    if settings.access_log:
        access = {"access_log": logging.getLogger("litemaas_proxy.access"), "access_log_class": AccessLogger}
    # aiohttp listens on the socket again with its own backlog (128 unless told): pass ours, or a burst of
    # connections overflows the accept queue and every dropped SYN costs its client a 1-15 s retransmit.
    web.run_app(app, sock=sock, print=None, shutdown_timeout=SHUTDOWN_DRAIN_TIMEOUT, handle_signals=True, backlog=settings.listen_backlog, **access)


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
    children = []
    for dummy in range(args.workers):
        pid = os.fork()
        if pid == 0:
            try:
                _serve(args, sock)
            finally:
                os._exit(0)
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
