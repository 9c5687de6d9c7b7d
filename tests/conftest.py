"""Session-wide real services for the whole suite: PostgreSQL and Redis on loopback.

Data lives under ``<checkout>/.work/pytest-<pid>/`` and is removed after the session.
Fixtures that need the proxy or the stub upstream build on these (see tests/support/).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import ansible_core  # noqa: E402
from tests.support.services import PostgresServer, RedisServer  # noqa: E402

# Modules of several minutes each (one deploy onto the in-memory API server and many playbook runs, or processes
# started and killed): collected first, so that the two pytest processes of the test command start on them and the
# short tests fill the rest, instead of one process ending the run alone with a long module.
LONG_FIRST = (
    "tests/playbooks/test_doc_commands_suites.py",
    "tests/playbooks/test_doc_commands_cluster.py",
    "tests/playbooks/test_doc_commands_monitoring.py",
    "tests/playbooks/test_doc_commands_jobs.py",
    "tests/playbooks/test_doc_commands_oc.py",
    "tests/playbooks/test_doc_commands_day2.py",
    "tests/playbooks/test_doc_commands_quickstart.py",
    "tests/integration/local/test_local_platform.py",
    "tests/playbooks/test_doc_commands_exec.py",
    "tests/playbooks/test_cluster_path.py",
    # tests/reliability, a run of its own
    "tests/reliability/test_bench_doc_lines.py",
    "tests/reliability/test_bench_doc.py",
    "tests/reliability/test_schemathesis.py",
    "tests/reliability/test_kill.py",
)


def _long_first(item) -> int:
    path = item.nodeid.split("::", maxsplit=1)[0]
    return LONG_FIRST.index(path) if path in LONG_FIRST else len(LONG_FIRST)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark the tests that also run with the oldest supported ansible-core (tests/support/ansible_core.py); the long
    modules first (a stable sort: the order within a module stays)."""
    items.sort(key=_long_first)
    used = set()
    for item in items:
        found = ansible_core.matching(item.nodeid)
        if found:
            item.add_marker(pytest.mark.ansible_core)
            used.update(found)
    whole_suite = all(Path(arg.split("::", maxsplit=1)[0]).resolve() == REPO / "tests" for arg in config.args)
    ignored = [Path(path).resolve() for path in config.getoption("ignore") or ()]

    def collected(entry: str) -> bool:
        path = (REPO / entry.split("::", maxsplit=1)[0]).resolve()
        return whole_suite and not any(path == top or top in path.parents for top in ignored)

    stale = [p for p in ansible_core.SUBSET if not (REPO / p.split("::", maxsplit=1)[0]).exists() or (collected(p) and p not in used)]
    if stale:
        raise pytest.UsageError(f"tests/support/ansible_core.py SUBSET names tests that do not exist: {stale}")


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory) -> Path:
    base = REPO / ".work" / f"pytest-{os.getpid()}"
    base.mkdir(parents=True, exist_ok=True)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(work_dir):
    server = PostgresServer(work_dir / "pg").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(work_dir):
    server = RedisServer(work_dir / "redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def collections_path(work_dir) -> Path:
    """An ANSIBLE_COLLECTIONS_PATH in which this checkout is ``rhpds.litemaas``."""
    root = work_dir / "collections"
    target = root / "ansible_collections" / "rhpds"
    target.mkdir(parents=True, exist_ok=True)
    link = target / "litemaas"
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    return root


@pytest.fixture(scope="session")
def ansible_env(collections_path) -> dict:
    """Environment for running ansible-playbook against this checkout as a collection."""
    env = dict(os.environ)
    # Our collection first; the collections from PyPI's ``ansible`` package stay reachable through site-packages.
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections_path)
    env["ANSIBLE_COLLECTIONS_SCAN_SYS_PATH"] = "true"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_LOCALHOST_WARNING"] = "false"
    env["ANSIBLE_INVENTORY_UNPARSED_WARNING"] = "false"
    env["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    # kubernetes.core keeps each API server's discovery in $TMPDIR/k8srcp-<host, user>.json and trusts it until a kind
    # is missing: a file left by an earlier run's in-memory API server on the same port (older code, other
    # subresources) must not answer for this one. The session's own directory, removed with it.
    tmp = collections_path.parent / "tmp"
    tmp.mkdir(exist_ok=True)
    env["TMPDIR"] = str(tmp)
    # LITEMAAS_ANSIBLE_CORE_VENV: ansible-playbook, ansible-doc, ansible-galaxy of another ansible-core.
    return ansible_core.apply_to(env, collections_path)


# ---------------------------------------------------------------- model boundary and proxy (tests/support/stub_upstream.py, proxy.py)

@pytest.fixture(scope="session")
def stub_upstream(work_dir):
    """A running OpenAI-compatible stub model server. ``.url`` is its OpenAI base URL (``http://127.0.0.1:P/v1``)."""
    from tests.support.stub_upstream import StubUpstream

    stub = StubUpstream(log_path=work_dir / "stub_upstream.log").start()
    yield stub
    stub.stop()


@pytest.fixture(scope="session")
def proxy_factory(pg_server, redis_server, stub_upstream, work_dir):
    """Start extra proxy processes: ``proxy_factory(database="x", env={...}, models=[...], dsn=..., redis_url=..., start=True)``.

    Each call gets its own database unless ``dsn`` is given (pass ``other.dsn`` to share one). All are stopped at session end.
    """
    from tests.support.proxy import ProxyProcess, stub_models

    started = []

    def make(database: str = None, dsn: str = None, redis_url: str = None, models: list = None, env: dict = None, start: bool = True, **kwargs):
        n = len(started) + 1
        if dsn is None:
            dsn = pg_server.create_database(database or f"proxy_extra_{n}")
        proc = ProxyProcess(dsn, redis_url or redis_server.url, stub_models(stub_upstream.url) if models is None else models,
                            work_dir=work_dir / f"proxy-{n}", env=env, **kwargs)
        started.append(proc)
        return proc.start() if start else proc

    yield make
    for proc in started:
        proc.terminate()


@pytest.fixture(scope="session")
def proxy(proxy_factory):
    """A running proxy (master key, its own database ``litellm_db``, Redis, stub models ``stub-model``, ``granite-3-8b``
    (chat) and ``stub-embed`` (embedding) at 1e-6/2e-6 USD per prompt/completion token).
    Exposes ``.url``, ``.master_key``, ``.dsn``, ``.admin(method, path, body)``."""
    return proxy_factory(database="litellm_db")
