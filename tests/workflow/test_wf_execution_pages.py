"""Pages of executions by keyset, filters, search by object key, and the version 3 schema."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scones.workflow.executions import (
    ExecutionStore,
    InvalidExecutionInputError,
    PageQuery,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def filled(path: Path, count: int) -> ExecutionStore:
    """``count`` executions started a second apart, every third FAILED, two machines."""
    db = ExecutionStore(path)
    for index in range(count):
        machine = "machine-a" if index % 2 == 0 else "machine-b"
        record, _ = db.start(machine, f"exec-{index:03d}", {"s3_key": f"img/{index:03d}.png"})
        status = "FAILED" if index % 3 == 0 else "SUCCEEDED"
        db.finish(record, status=status, output=None, error=None, cause=None, history=[])
        db._conn.execute(  # one start a second, as if over time
            "UPDATE executions SET started_at = ? WHERE execution_id = ?",
            (
                (T0 + timedelta(seconds=index)).isoformat(timespec="microseconds"),
                record.execution_id,
            ),
        )
    return db


def names(page) -> list[str]:
    return [item.name for item in page.items]


def test_pages_walk_every_execution_once_newest_first_both_ways(tmp_path) -> None:
    with filled(tmp_path / "x.db", 23) as db:
        seen, query = [], PageQuery(limit=5)
        page = db.page(query)
        assert page.newer is None
        while True:
            seen += names(page)
            if page.older is None:
                break
            page = db.page(PageQuery(limit=5, before=page.older))
        assert seen == [f"exec-{i:03d}" for i in range(22, -1, -1)]
        last = db.page(PageQuery(limit=5, oldest=True))
        assert names(last) == ["exec-004", "exec-003", "exec-002", "exec-001", "exec-000"]
        assert last.older is None and last.newer is not None
        back = db.page(PageQuery(limit=5, after=last.newer))
        assert names(back) == [f"exec-{i:03d}" for i in range(9, 4, -1)]


def test_filters_combine_and_search_finds_names_and_keys_by_prefix(tmp_path) -> None:
    with filled(tmp_path / "x.db", 12) as db:
        failed_a = db.page(PageQuery(status="FAILED", state_machine="machine-a"))
        assert names(failed_a) == ["exec-006", "exec-000"]
        window = PageQuery(since=T0 + timedelta(seconds=3), until=T0 + timedelta(seconds=6))
        assert names(db.page(window)) == ["exec-005", "exec-004", "exec-003"]
        assert names(db.page(PageQuery(search="img/01"))) == ["exec-011", "exec-010"]
        assert names(db.page(PageQuery(search="exec-00"))) == [
            f"exec-{i:03d}" for i in range(9, -1, -1)
        ]
        assert names(db.page(PageQuery(search="nothing"))) == []
        assert db.count_by_status("machine-b") == {"SUCCEEDED": 4, "FAILED": 2}
        assert db.state_machines() == ("machine-a", "machine-b")


def test_a_map_execution_is_found_by_any_of_its_keys(tmp_path) -> None:
    with ExecutionStore(tmp_path / "x.db") as db:
        db.start("map", "many", {"s3_bucket": "b", "keys": ["a/1.png", "z/<script>.png"]})
        assert names(db.page(PageQuery(search="z/<script>"))) == ["many"]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        (PageQuery(status="LOST"), "'LOST'"),
        (PageQuery(limit=0), "0"),
        (PageQuery(limit=501), "501"),
        (PageQuery(before="2026-11-01"), "'2026-11-01'"),
        (PageQuery(after="x~1"), "'x~1'"),
        (PageQuery(since=datetime(2026, 11, 1)), "time zone"),
        (PageQuery(search="x" * 2000), "2000"),
    ],
)
def test_a_bad_page_query_names_what_is_wrong(tmp_path, query, named) -> None:
    with ExecutionStore(tmp_path / "x.db") as db, pytest.raises(InvalidExecutionInputError) as e:
        db.page(query)
    assert named in str(e.value)


def test_a_version_2_database_gets_its_keys_indexed_on_open(tmp_path) -> None:
    path = tmp_path / "v2.db"
    with ExecutionStore(path) as db:
        db.start("single", "old-one", {"s3_bucket": "b", "s3_key": "old/key.png"})
        db.start("map", "old-map", {"s3_bucket": "b", "keys": ["old/m1.png", 7]})
    connection = sqlite3.connect(path)
    connection.executescript(
        "DROP TABLE execution_keys; DROP INDEX executions_by_start;"
        "CREATE INDEX executions_by_start ON executions (started_at DESC); PRAGMA user_version=2;"
    )
    connection.close()
    with ExecutionStore(path) as db:
        assert names(db.page(PageQuery(search="old/key"))) == ["old-one"]
        assert names(db.page(PageQuery(search="old/m1"))) == ["old-map"]
        indexes = dict(
            db._conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'").fetchall()
        )
    assert "DESC" not in indexes["executions_by_start"]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 3
