"""Fixtures for the study tests: every database test runs on SQLite and on PostgreSQL.

PostgreSQL: ``$R2C_TEST_PG_URL`` if set (a server where the user may create databases; otherwise each test
resets the ``public`` schema of that database). Else a throwaway cluster is started from the Debian packages
(``/usr/lib/postgresql/*/bin``) on 127.0.0.1 at a free port: as root it runs as the ``postgres`` system user
(or a dedicated ``r2ctest`` user created for it) through ``runuser``, since the server refuses to run as root.
The PostgreSQL tests skip, with the reason, only when no server can be started.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from study.db import init_db, make_engine, session_factory


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bindir() -> Path | None:
    def version(p: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/([\d.]+)/", p)
        return tuple(int(x) for x in m.group(1).split(".")) if m else (0,)

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def _system_user() -> str | None:
    """The unprivileged user to run the server as (root only); None when none can be had."""
    for name in ("postgres", "r2ctest"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    res = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "r2ctest"],
                         capture_output=True, text=True)
    return "r2ctest" if res.returncode == 0 else None


@dataclass
class PgServer:
    """A PostgreSQL server the tests may create databases on."""

    admin_url: str  # SQLAlchemy URL of a maintenance database
    template: str | None = None  # migrated template database, when databases can be created
    stop: Callable[[], None] | None = None
    made: list[str] = field(default_factory=list)

    def _conninfo(self, url: str) -> str:
        return url.replace("postgresql+psycopg://", "postgresql://", 1)

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(self._conninfo(self.admin_url), autocommit=True, connect_timeout=10)

    def url_for(self, db: str) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.admin_url).set(database=db).render_as_string(hide_password=False)

    def prepare(self) -> None:
        """Create and migrate a template database; without the right to create databases, use schema resets."""
        import psycopg

        name = f"r2c_tpl_{uuid.uuid4().hex[:8]}"
        try:
            with self._admin() as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.Error:
            self.template = None
            return
        engine = init_db(self.url_for(name))
        engine.dispose()
        self.template = name
        self.made.append(name)

    def new_database(self) -> str:
        if self.template is None:  # reset the given database's schema instead
            with self._admin() as conn:
                conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
                conn.execute("CREATE SCHEMA public")
            init_db(self.admin_url).dispose()
            return self.admin_url
        name = f"r2c_t_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return self.url_for(name)

    def drop(self, url: str) -> None:
        if self.template is None:
            return
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        try:
            if self.stop is None:
                for name in self.made:
                    with self._admin() as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            if self.stop is not None:
                self.stop()


def _start_cluster() -> PgServer:
    """Start a throwaway cluster; raises RuntimeError with the reason when that is impossible."""
    bindir = _pg_bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server binaries (initdb) in /usr/lib/postgresql/*/bin or on PATH; "
                           "install postgresql (scripts/setup_system.sh) or set R2C_TEST_PG_URL")
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:
        user = _system_user()
        if user is None or shutil.which("runuser") is None:
            raise RuntimeError("running as root without a postgres user or runuser to start PostgreSQL as")
        owner = pwd.getpwnam(user)
        prefix = ["runuser", "-u", user, "--"]
    data = Path(tempfile.mkdtemp(prefix="r2c-pg-"))
    if owner is not None:
        os.chown(data, owner.pw_uid, owner.pw_gid)
    data.chmod(0o700)
    pgdata = data / "pgdata"

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(prefix + list(cmd), capture_output=True, text=True, timeout=120)

    res = run(str(bindir / "initdb"), "-D", str(pgdata), "-A", "trust", "-U", "postgres", "-E", "UTF8",
              "--locale=C", "--no-sync")
    if res.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {(res.stderr or res.stdout).strip().splitlines()[-1:]}")
    port = _free_port()
    opts = (f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200")
    res = run(str(bindir / "pg_ctl"), "-D", str(pgdata), "-l", str(data / "server.log"), "-w", "-t", "60",
              "-o", opts, "start")
    if res.returncode != 0:
        log = (data / "server.log").read_text(errors="replace")[-500:] if (data / "server.log").exists() else ""
        shutil.rmtree(data, ignore_errors=True)
        raise RuntimeError(f"pg_ctl start failed: {(res.stderr or res.stdout).strip()[-300:]} {log}")

    def stop() -> None:
        run(str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "stop")
        shutil.rmtree(data, ignore_errors=True)

    return PgServer(admin_url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", stop=stop)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server (see the module doc); skips with the reason when none can be had."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("PostgreSQL tests need psycopg (pip install 'psycopg[binary]')")
    env = os.environ.get("R2C_TEST_PG_URL")
    try:
        if env:
            from study.db import resolve_url

            server = PgServer(admin_url=resolve_url(env))
        else:
            server = _start_cluster()
        server.prepare()
    except Exception as exc:  # any failure to get a server is a skip reason, not an error
        pytest.skip(f"no PostgreSQL server could be started: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated, empty study database URL: SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'study.db'}"
        init_db(url).dispose()
        yield url
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.new_database()
    try:
        yield url
    finally:
        server.drop(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    init_db(url).dispose()
    return url


@pytest.fixture
def factory(db_url: str) -> Iterator[Any]:
    engine = make_engine(db_url)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture
def assets(tmp_path: Path) -> Path:
    return tmp_path / "assets"


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 generated small gray images (half covid, half control, sources ieee/nih) and their MANIFEST.csv."""
    from study.simstudy import write_synthetic_manifest

    return write_synthetic_manifest(tmp_path_factory.mktemp("tiny-cxr"), 60, seed=0)


@dataclass
class BuiltStudy:
    study_id: int
    readers: dict[str, int]  # name -> id
    codes: dict[str, str]  # name -> access code


@pytest.fixture
def make_study(tiny_manifest: Path, assets: Path) -> Callable[..., BuiltStudy]:
    """``make_study(factory, readers=("r1", "r2"), n_cases=10, **spec_fields)`` builds an open study with the
    synthetic renderer and returns its id, reader ids and access codes."""
    from study.accounts import add_reader
    from study.builder import StudySpec, build_study
    from study.render import SyntheticRenderer

    def build(factory: Any, readers: tuple[str, ...] = ("r1", "r2"), n_cases: int = 10, name: str = "s1",
              renderer: Any = None, **fields: Any) -> BuiltStudy:
        ids, codes = {}, {}
        with factory.begin() as session:
            for r in readers:
                reader, code = add_reader(session, r)
                ids[r], codes[r] = reader.id, code
        spec = StudySpec(name=name, manifest=tiny_manifest, n_cases=n_cases, readers=tuple(readers), **fields)
        sid = build_study(factory, spec, renderer or SyntheticRenderer(spec.kind, working_size=32), assets=assets,
                          show_bar=False)
        return BuiltStudy(sid, ids, codes)

    return build


@pytest.fixture(autouse=True)
def _cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Access-code hashing at a lower cost in tests (the format stores N, so checks still verify)."""
    import study.security as sec

    monkeypatch.setattr(sec, "SCRYPT_N", 2**10)
