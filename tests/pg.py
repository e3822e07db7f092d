"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temporary folder.

The server listens on a free port on 127.0.0.1 only, trusts local connections, runs with
fsync off (test data need no durability) and is removed, folder and all, when the context
ends. initdb refuses to run as root, so under root (as in CI containers) the server runs as
the ``postgres`` account (or ``nobody``) through ``subprocess``'s ``user=``/``group=``.

``pg_server`` is a pytest fixture (import it into a test module) that shares one server per
test process; ``PostgresServer.team_database()`` gives a fresh database owned by a migration
role, with a separate unprivileged app role, as a team deployment has them. ``database``
(import it too, with ``pg_server``) runs a test on a fresh SQLite file and on PostgreSQL;
``process_context()`` and ``start_processes()`` start the concurrent writers those tests need.
"""
from __future__ import annotations

import atexit
import contextlib
import glob
import multiprocessing
import os
import pwd
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

OWNER_ROLE, APP_ROLE = "surveillance_owner", "surveillance_app"


def find_pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl (PATH first, then Debian's layout), or None."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major, reverse=True):
        folder = Path(initdb).parent
        if (folder / "pg_ctl").exists():
            return folder
    return None


def _major(initdb: str) -> int:
    version = Path(initdb).parent.parent.name
    return int(version) if version.isdigit() else 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> dict:
    """subprocess keyword arguments that drop root to an unprivileged account."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    raise RuntimeError("Running as root with no 'postgres' or 'nobody' account for initdb; "
                       "create a postgres user or run the tests as a normal user.")


class PostgresServer:
    """A running server; ``url(database)`` gives a SQLAlchemy URL, ``create_database`` a fresh one."""

    def __init__(self, port: int, root: Path):
        self.port = port
        self.root = root

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str, owner: str = "postgres") -> str:
        """Create database ``name`` (letters, digits, underscores) and return its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"Database names here are plain words, got {name!r}.")
        self._admin(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        return self.url(name)

    def create_role(self, name: str) -> None:
        """A login role without superuser, CREATEDB or CREATEROLE (kept if it exists)."""
        self._admin(f"DO $$ BEGIN CREATE ROLE \"{name}\" LOGIN; "
                    "EXCEPTION WHEN duplicate_object THEN NULL; END $$")

    def team_database(self) -> tuple[str, str]:
        """A fresh database owned by the migration role: ``(app_url, admin_url)``.

        The app role owns nothing and gets its privileges from the migration's grants.
        """
        self.create_role(OWNER_ROLE)
        self.create_role(APP_ROLE)
        name = f"cases_{uuid.uuid4().hex[:12]}"
        self.create_database(name, owner=OWNER_ROLE)
        return self.url(name, APP_ROLE), self.url(name, OWNER_ROLE)


@contextlib.contextmanager
def running_postgres(bin_dir: Path | None = None) -> Iterator[PostgresServer]:
    """Start a server in a temporary folder, yield it, then stop it and delete the folder."""
    bin_dir = bin_dir or find_pg_bin()
    if bin_dir is None:
        raise FileNotFoundError("initdb/pg_ctl not found; install PostgreSQL "
                                "(apt-get install postgresql).")
    as_user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    data, log = root / "data", root / "server.log"

    def run(*args: str) -> None:
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=root, **as_user)
        if done.returncode != 0:
            server_log = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}): "
                               f"{done.stderr.strip()}\n{server_log}")

    started = False
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync")
        for attempt in range(3):  # the free port can be taken between probing and binding
            port = _free_port()
            options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off")
            try:
                run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                    "-o", options, "start")
            except RuntimeError:
                if attempt == 2:
                    raise
                continue
            started = True
            break
        yield PostgresServer(port, root)
    finally:
        if started:
            subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                            "stop"], capture_output=True, timeout=60, cwd=root, **as_user)
        shutil.rmtree(root, ignore_errors=True)


_shared: list[PostgresServer] = []


@pytest.fixture(scope="session")
def pg_server() -> PostgresServer:
    """One server per test process (skipped locally, failed in CI, without PostgreSQL)."""
    if not _shared:
        bin_dir = find_pg_bin()
        if bin_dir is None:
            message = "PostgreSQL (initdb/pg_ctl) is not installed: apt-get install postgresql"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        stack = contextlib.ExitStack()
        _shared.append(stack.enter_context(running_postgres(bin_dir)))
        atexit.register(stack.close)
    return _shared[0]


PG = pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.xdist_group("postgres")])


@pytest.fixture(params=["sqlite", PG])
def database(request, tmp_path) -> tuple[str, str | None]:
    """``(app_url, admin_url)``: SQLite migrates itself; PostgreSQL has an owner and an app role."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cases.sqlite'}", None
    return request.getfixturevalue("pg_server").team_database()


def process_context():
    """Processes for concurrency tests: forked from a clean server that imported the store once.

    Not plain fork (the test process has threads), not spawn (each child would import pandas
    and SQLAlchemy again: seconds per test on two cores). The children inherit the server's
    environment, not the current test's: pass them database URLs, not a data folder.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["store.cases", "store.watchlists", "store.views", "pytest",
                                "hypothesis", "tests.pg"])
    return ctx


def start_processes(processes) -> None:
    """Start ``processes`` with a bare ``__main__``.

    An AppTest earlier in the same test process leaves a page script as ``__main__``, and
    every new process would run that page before its target (seconds each, and a page's
    side effects): multiprocessing re-imports the parent's main module in its children.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        for process in processes:
            process.start()
    finally:
        sys.modules["__main__"] = main


def collect(results, processes, timeout: float = 120) -> list:
    """One result from each process; fails at once if one dies first (not after ``timeout``)."""
    got, deadline = [], time.monotonic() + timeout
    while len(got) < len(processes):
        try:
            got.append(results.get(timeout=0.2))
        except queue.Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            assert not dead, f"a worker process failed (exit codes {dead}); its error is above"
            assert time.monotonic() < deadline, f"only {len(got)} of {len(processes)} done"
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    return got
