"""``python -m study``: the commands, and one clear ``error:`` line with a non-zero exit for bad input."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from study.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_full_flow(db_url: str, tiny_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", db_url]
    assert _run(capsys, "init", *db)[0] == 0
    code, out, _ = _run(capsys, "add-reader", "Dr A", *db)
    assert code == 0 and "access code" in out
    assert _run(capsys, "add-reader", "Dr B", "--role", "reader", *db)[0] == 0
    assets = str(tmp_path / "assets")
    build = ["build", "--name", "cli", "--manifest", str(tiny_manifest), "--n", "6", "--practice", "1",
             "--repeat-fraction", "0.34", "--repeat-min-gap", "1", "--assets", assets, "--no-progress", *db]
    code, out, err = _run(capsys, *build)
    assert code == 0, err
    assert "6 cases (+1 practice)" in out and "renditions 35/35" in out and "open" in out
    assert _run(capsys, *build)[0] == 0  # resuming a finished build is a no-op
    code, out, _ = _run(capsys, "status", *db)
    assert code == 0 and "Dr A: 0/8 answered, practice 0/1" in out
    code, out, _ = _run(capsys, "stats", "--study", "cli", *db)
    assert code == 0 and "Selection ratio" in out and "overall" in out and "Table III" in out
    code, out, _ = _run(capsys, "export", "--out", str(tmp_path / "exp"), "--format", "csv", *db)
    assert code == 0 and (tmp_path / "exp" / "cli_votes.csv").is_file()
    code, out, _ = _run(capsys, "set-status", "closed", "--study", "cli", *db)
    assert code == 0 and "closed" in out
    code, out, _ = _run(capsys, "reset-code", "Dr A", *db)
    assert code == 0 and "new access code" in out
    nopref = ["build", "--name", "cli-np", "--manifest", str(tiny_manifest), "--n", "2", "--no-preference",
              "--assets", assets, "--no-progress", *db]
    assert _run(capsys, *nopref)[0] == 0
    from study.builder import get_study
    from study.db import connect

    with connect(db_url).begin() as s:
        assert get_study(s, "cli-np").settings.get("no_preference") is True
        assert "no_preference" not in get_study(s, "cli").settings  # off by default, and not stored


def test_bad_input_gives_one_line(sqlite_url: str, tiny_manifest: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", sqlite_url]
    _run(capsys, "add-reader", "ada", *db)
    code, _, err = _run(capsys, "add-reader", "ada", *db)
    assert code == 2 and "already exists" in _one_error_line(err)
    code, _, err = _run(capsys, "stats", "--study", "nope", *db)
    assert code == 2 and "unknown study 'nope'" in _one_error_line(err)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,file\nx,y.png\n")
    code, _, err = _run(capsys, "build", "--name", "b", "--manifest", str(bad), "--no-progress", *db)
    assert code == 2 and "lacks column" in _one_error_line(err)
    code, _, err = _run(capsys, "build", "--name", "b", "--manifest", str(tmp_path / "missing.csv"), *db)
    assert code == 2 and "manifest not found" in _one_error_line(err)
    code, _, err = _run(capsys, "status", "--db", f"sqlite:///{tmp_path / 'fresh.db'}")
    assert code == 2 and "python -m study init" in _one_error_line(err)
    code, _, err = _run(capsys, "export", "--out", str(tmp_path), "--format", "xlsx", *db)
    assert code == 2


def test_r2c_renderer_missing_is_one_line(sqlite_url: str, tiny_manifest: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "r2c_core.study_renderer", None)  # import fails
    code, _, err = _run(capsys, "build", "--name", "r", "--manifest", str(tiny_manifest), "--renderer", "r2c",
                        "--db", sqlite_url)
    assert code == 2 and "r2c renderer is not available" in _one_error_line(err)


def test_locked_database_exits_nonzero_with_one_line(sqlite_url: str, tmp_path: Path) -> None:
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        res = subprocess.run([sys.executable, "-m", "study", "add-reader", "ada", "--db", sqlite_url],
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "R2C_DB_BUSY_TIMEOUT_MS": "300"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert res.returncode == 2
    assert "is locked by another process" in _one_error_line(res.stderr)


def test_simulate_then_stats(sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", sqlite_url]
    code, out, err = _run(capsys, "simulate", "--seed", "2", "--readers", "3", "--cases", "8",
                          "--assets", str(tmp_path / "a"), *db)
    assert code == 0, err
    assert "3 readers" in out
    code, out, _ = _run(capsys, "stats", "--study", "simulated-2", *db)
    assert code == 0 and "sim-reader-3" in out and "Fleiss' kappa" in out
    try:
        import study.analysis  # noqa: F401
    except ImportError:
        return
    code, out, err = _run(capsys, "stats", "--full", "--n-boot", "50", *db)
    assert code == 0, err
    assert out.strip()


def test_module_entry_point_runs(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "study", "init", "--db", f"sqlite:///{tmp_path / 'm.db'}"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "schema ready" in res.stdout


def test_backup_while_voting_then_restore(sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16, finding 12: ``study backup`` copies a consistent snapshot while votes are being written, the copy is
    private, and ``study restore`` brings it back with every vote."""
    import stat
    import threading

    from study.backup import counts
    from study.db import connect
    from study.export import tidy_votes
    from study.voting import next_query, submit_vote

    db = ["--db", sqlite_url]
    assert _run(capsys, "simulate", "--seed", "3", "--readers", "2", "--cases", "6", "--assets", str(tmp_path / "a"), *db)[0] == 0
    from study.accounts import add_reader
    from study.builder import assign_readers

    factory = connect(sqlite_url)
    with factory.begin() as s:
        extra = add_reader(s, "late", "reader")[0].id
    with factory.begin() as s:
        assign_readers(s, "simulated-3", ["late"])
    stop = threading.Event()

    def vote() -> None:  # a reader keeps voting during the backup
        while not stop.is_set():
            with factory.begin() as s:
                view = next_query(s, extra)
                if view is None:
                    return
                submit_vote(s, extra, view.query_token, 1)

    t = threading.Thread(target=vote)
    t.start()
    code, out, err = _run(capsys, "backup", "--out", str(tmp_path / "b" / "backup.db"), *db)
    stop.set()
    t.join()
    assert code == 0, err and "votes" in out
    assert stat.S_IMODE((tmp_path / "b" / "backup.db").stat().st_mode) == 0o600
    assert _run(capsys, "backup", "--out", str(tmp_path / "b" / "backup.db"), *db)[0] != 0  # never overwritten
    snap = counts(f"sqlite:///{tmp_path / 'b' / 'backup.db'}")
    assert snap["votes"] >= 12  # the simulated readers' votes at least; the late reader's up to the snapshot
    new = f"sqlite:///{tmp_path / 'restored' / 'study.db'}"
    code, out, err = _run(capsys, "restore", "--from", str(tmp_path / "b" / "backup.db"), "--db", new)
    assert code == 0, err
    assert counts(new) == snap
    with connect(new).begin() as s1, connect(f"sqlite:///{tmp_path / 'b' / 'backup.db'}").begin() as s2:
        a, b = tidy_votes(s1, "simulated-3"), tidy_votes(s2, "simulated-3")
    assert a.drop(columns=["reading_time_s"]).equals(b.drop(columns=["reading_time_s"]))
    code, _, err = _run(capsys, "restore", "--from", str(tmp_path / "b" / "backup.db"), "--db", new)
    assert code != 0 and "--force" in _one_error_line(err)
    code, _, err = _run(capsys, "backup", "--out", str(tmp_path / "x.db"), "--db", "postgresql+psycopg://u@h/db")
    assert code != 0 and "pg_dump" in _one_error_line(err)


def test_failed_backup_or_restore_leaves_nothing_half_done(sqlite_url: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A backup of something that is not a database leaves no file (so the retry is not refused); a restore from a
    bad backup leaves the live database as it was; a forced restore replaces it whole."""
    from study.backup import counts

    db = ["--db", sqlite_url]
    assert _run(capsys, "simulate", "--seed", "3", "--readers", "2", "--cases", "4", "--assets", str(tmp_path / "a"), *db)[0] == 0
    before = counts(sqlite_url)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a SQLite file" * 100)
    code, _, err = _run(capsys, "backup", "--out", str(tmp_path / "b.db"), "--db", f"sqlite:///{junk}")
    assert code != 0 and "not a readable SQLite" in err and not (tmp_path / "b.db").exists()
    assert not list(tmp_path.glob(".b.db.*"))
    assert _run(capsys, "backup", "--out", str(tmp_path / "b.db"), *db)[0] == 0  # the retry is not refused
    code, _, err = _run(capsys, "restore", "--from", str(junk), "--force", *db)
    assert code != 0 and "not a readable SQLite" in err
    assert counts(sqlite_url) == before
    live = Path(sqlite_url.removeprefix("sqlite:///"))
    assert not list(live.parent.glob(f".{live.name}.*"))
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert _run(capsys, "init", "--db", empty)[0] == 0
    assert _run(capsys, "restore", "--from", str(tmp_path / "b.db"), "--force", "--db", empty)[0] == 0
    assert counts(empty) == before
