"""The spool: rows appended are replayed in order, deleted only once written, and survive crashes.
These need no database."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys

import pytest

from thrifty.ledger import spool as spool_module
from thrifty.ledger.spool import Spool

from tests.ledger_pg.rows import make_row


def ids(rows) -> list[str]:
    return [r.request_id for r in rows]


class Sink:
    """A `write` for replay: keeps what it gets; raises at the chosen call."""

    def __init__(self, fail_at: int | None = None):
        self.batches: list[list[str]] = []
        self.fail_at = fail_at

    def __call__(self, rows):
        if self.fail_at is not None and len(self.batches) == self.fail_at:
            self.fail_at = None
            raise ConnectionError("database gone")
        self.batches.append(ids(rows))

    @property
    def rows(self) -> list[str]:
        return [i for b in self.batches for i in b]


def test_rows_come_back_in_order_and_whole(tmp_path):
    sp = Spool(str(tmp_path))
    rows = [make_row(i, cost_usd=None if i == 3 else make_row(0).cost_usd, request_body="ü" * i) for i in range(10)]
    sp.append(rows[:4])
    sp.seal()
    sp.append(rows[4:])
    assert list(sp.read()) == rows  # the open segment is readable too
    assert len(sp.segments()) == 2 and sp.has_own()
    sp.seal()
    sink = Sink()
    assert sp.replay(sink, batch_size=3) == 10
    assert sink.rows == ids(rows)
    assert [len(b) for b in sink.batches] == [3, 1, 3, 3]  # batches never span segments
    assert sp.segments() == [] and not sp.has_own()


def test_an_open_segment_is_not_replayed(tmp_path):
    sp = Spool(str(tmp_path))
    sp.append([make_row(1)])
    sink = Sink()
    assert Spool(str(tmp_path)).replay(sink) == 0  # another process: the segment is still written to
    assert sp.replay(sink) == 0  # nor by its own writer before seal()
    sp.seal()
    assert Spool(str(tmp_path)).replay(sink) == 1


def test_a_failed_replay_keeps_the_rest_and_resumes_where_it_stopped(tmp_path):
    sp = Spool(str(tmp_path))
    sp.append([make_row(i) for i in range(10)])
    sp.seal()
    sink = Sink(fail_at=2)
    with pytest.raises(ConnectionError):
        sp.replay(sink, batch_size=3)
    assert sink.rows == ids(make_row(i) for i in range(6))
    assert len(sp.segments()) == 1
    sp.replay(sink, batch_size=3)
    assert sink.rows == ids(make_row(i) for i in range(10))  # nothing repeated in this process
    assert sp.segments() == []


def test_a_crash_between_replay_and_delete_replays_again(tmp_path):
    sp = Spool(str(tmp_path))
    sp.append([make_row(i) for i in range(5)])
    sp.seal()

    class Died(BaseException):
        pass

    def die():
        raise Died

    sink = Sink()
    with pytest.raises(Died):  # every row written, the process dies before deleting the file
        sp.replay(sink, batch_size=5, between=die)
    again = Sink()
    assert Spool(str(tmp_path)).replay(again) == 5  # the next process: written twice, never lost
    assert again.rows == sink.rows == ids(make_row(i) for i in range(5))


def test_a_segment_being_replayed_elsewhere_holds_back_the_later_ones_of_its_origin(tmp_path):
    writer = Spool(str(tmp_path))
    writer.append([make_row(1)])
    writer.seal()
    writer.append([make_row(2)])
    writer.seal()
    first = os.path.join(str(tmp_path), writer.segments()[0])
    fd = os.open(first, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process is replaying the first segment
    try:
        sink = Sink()
        assert Spool(str(tmp_path)).replay(sink) == 0  # req-2 must not overtake req-1
    finally:
        os.close(fd)
    Spool(str(tmp_path)).replay(sink)
    assert sink.rows == ["req-1", "req-2"]


def test_a_line_torn_by_a_crash_is_logged_and_skipped(tmp_path, caplog):
    sp = Spool(str(tmp_path))
    sp.append([make_row(1), make_row(2)])
    sp.seal()
    with open(os.path.join(str(tmp_path), sp.segments()[0]), "ab") as f:
        f.write(b'{"request_id": "req-3", "started_')
    sink = Sink()
    with caplog.at_level(logging.ERROR, logger="thrifty.ledger"):
        assert sp.replay(sink) == 2
    assert sink.rows == ["req-1", "req-2"]
    assert "started_" in caplog.text  # the fragment is in the log
    assert sp.segments() == []


def test_a_failed_append_raises_and_the_next_one_starts_a_fresh_segment(tmp_path, monkeypatch):
    sp = Spool(str(tmp_path))
    sp.append([make_row(1)])
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool_module.os, "write", half_then_full)
    with pytest.raises(OSError):
        sp.append([make_row(2)])
    monkeypatch.setattr(spool_module.os, "write", real_write)
    sp.append([make_row(3)])
    sp.seal()
    assert len(sp.segments()) == 2
    sink = Sink()
    sp.replay(sink)
    assert sink.rows == ["req-1", "req-3"]  # req-2 was refused, and said so


def test_a_process_killed_while_spooling_leaves_its_rows_to_the_next(tmp_path):
    code = (
        "import os, sys\n"
        "from thrifty.ledger.spool import Spool\n"
        "from tests.ledger_pg.rows import make_row\n"
        "sp = Spool(sys.argv[1])\n"
        "sp.append([make_row(i) for i in range(50)])\n"
        "os._exit(9)  # no seal, no clean-up: the kernel drops the lock\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=root, check=False, timeout=60,
                   env={**os.environ, "PYTHONPATH": root})
    sink = Sink()
    assert Spool(str(tmp_path)).replay(sink) == 50
    assert sink.rows == [f"req-{i}" for i in range(50)]


def test_segments_of_older_processes_come_first(tmp_path):
    old, new = Spool(str(tmp_path)), Spool(str(tmp_path))
    new.append([make_row("new")])
    old.append([make_row("old")])
    old.seal()
    new.seal()
    sink = Sink()
    Spool(str(tmp_path)).replay(sink)
    assert sink.rows == ["req-old", "req-new"]


def test_other_files_in_the_directory_are_left_alone(tmp_path):
    (tmp_path / "rejected.jsonl").write_text('{"request_id": "x"}\n')
    sink = Sink()
    assert Spool(str(tmp_path)).replay(sink) == 0
    assert (tmp_path / "rejected.jsonl").exists()


def test_levers_and_the_accounting_survive_the_spool(tmp_path):
    from tests.ledger_util import savings_rows

    sp = Spool(str(tmp_path))
    rows = savings_rows()
    sp.append(rows)
    assert list(sp.read()) == rows
    assert [r.accounting for r in sp.read()] == [r.accounting for r in rows]
