"""SQLite writers of one file in several processes queue on a file lock beside it (db/engine.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from pixelmill.db import engine as engines
from pixelmill.db.engine import make_engine, write_tx

WRITER = textwrap.dedent("""
    import sys
    from sqlalchemy import text
    from pixelmill.db.engine import make_engine, write_tx
    db = make_engine(sys.argv[1])
    for _ in range(200):
        with write_tx(db) as conn:  # read, then write what was read plus one: lost without the lock
            n = conn.execute(text("SELECT n FROM counter")).scalar_one()
            conn.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
""")


def test_writers_in_three_processes_lose_no_update(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    db = make_engine(url)
    with write_tx(db) as conn:
        conn.execute(text("CREATE TABLE counter (n INTEGER)"))
        conn.execute(text("INSERT INTO counter VALUES (0)"))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url]) for _ in range(3)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    with db.connect() as conn:
        assert conn.execute(text("SELECT n FROM counter")).scalar_one() == 600
    assert (tmp_path / "c.db.writelock").exists()


def test_a_writer_that_never_lets_go_fails_the_others_after_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(600)"), str(tmp_path / "c.db.writelock")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        monkeypatch.setattr(engines._WriteLock, "TIMEOUT_SECONDS", 0.3)
        db = make_engine(url)
        with pytest.raises(OperationalError, match="database is locked"), write_tx(db):
            pass
    finally:
        holder.kill()
        holder.communicate()  # waits, and closes its pipe
