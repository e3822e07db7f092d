"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temporary folder.

The server listens on a free port on 127.0.0.1 only, trusts local connections, runs with
fsync off (test data need no durability) and is removed, folder and all, when the context
ends. initdb refuses to run as root, so under root (as in CI containers) the server runs as
the ``postgres`` account (or ``nobody``) through ``subprocess``'s ``user=``/``group=``.
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


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

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (letters, digits, underscores) and return its URL."""
        import psycopg

        if not name.replace("_", "").isalnum():
            raise ValueError(f"Database names here are plain words, got {name!r}.")
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


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
