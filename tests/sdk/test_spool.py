"""The disk spool on its own: order by ticket, progress across restarts, torn writes, locks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from watchkeeper_sdk._spool import Record, Spool


def prediction(n: int) -> Record:
    return "prediction", orjson.dumps({"event_id": f"p{n}", "n": n})


def outcome(n: int) -> Record:
    return "outcome", orjson.dumps({"event_id": f"o{n}", "n": n})


def event_id(event: bytes) -> str:
    value: str = orjson.loads(event)["event_id"]
    return value


def drain(spool: Spool, limit: int = 100) -> list[str]:
    """Read and commit everything readable now, returning event ids in replay order."""
    ids: list[str] = []
    while (head := spool.read_head(limit)) is not None:
        ids += [event_id(event) for _, event in head.records]
        spool.commit(head, len(head.records))
    return ids


def test_a_batch_spooled_late_under_an_earlier_ticket_is_replayed_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    in_flight = spool.reserve()  # taken off the queue first, still being sent
    spilled = spool.reserve()  # taken later by a caller whose queue was full
    spool.write(spilled, [prediction(3), prediction(4)])

    assert spool.pending()
    assert spool.read_head(10) is None  # must not overtake the batch still in flight

    spool.write(in_flight, [prediction(1), prediction(2)])  # its delivery failed
    assert drain(spool) == ["p1", "p2", "p3", "p4"]
    assert not spool.pending()
    spool.close()


def test_a_delivered_ticket_is_released_and_frees_the_queue(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    delivered = spool.reserve()
    spilled = spool.reserve()
    spool.write(spilled, [prediction(1)])

    spool.release(delivered)

    assert drain(spool) == ["p1"]
    spool.close()


def test_a_read_keeps_the_logging_order_with_up_to_limit_events_of_each_kind(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    records = [prediction(1), outcome(1), prediction(2), outcome(2), prediction(3), outcome(3)]
    spool.write(spool.reserve(), [*records, prediction(4)])

    reads = []
    while (head := spool.read_head(2)) is not None:
        reads.append([event_id(event) for _, event in head.records])
        spool.commit(head, len(head.records))

    # interleaved kinds are read together (not one event per read), two of each at most
    assert reads == [["p1", "o1", "p2", "o2"], ["p3", "o3", "p4"]]
    spool.close()


def test_progress_survives_a_restart_so_nothing_is_replayed_twice(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.write(first.reserve(), [prediction(n) for n in range(5)])
    head = first.read_head(2)
    assert head is not None
    first.commit(head, 2)
    first.close()

    second = Spool(tmp_path)
    assert second.adopt_orphans() > 0

    assert drain(second) == ["p2", "p3", "p4"]
    assert list(tmp_path.iterdir()) == []  # the dead instance's directory is gone
    second.close()


def test_a_torn_last_line_is_skipped_and_reported(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.write(first.reserve(), [prediction(1), prediction(2)])
    assert first.directory is not None
    (segment,) = first.directory.glob("*.seg")
    first.close()
    with segment.open("ab") as file:  # the writer died in the middle of a line
        file.write(b'{"kind":"prediction","event":{"event_')
    unreadable: list[Any] = []

    second = Spool(tmp_path, on_unreadable=lambda *args: unreadable.append(args))
    second.adopt_orphans()

    assert drain(second) == ["p1", "p2"]
    assert len(unreadable) == 1
    assert not second.pending()
    second.close()


def test_a_live_clients_directory_is_not_adopted(tmp_path: Path) -> None:
    live = Spool(tmp_path)
    live.write(live.reserve(), [prediction(1)])
    other = Spool(tmp_path)

    assert other.adopt_orphans() == 0
    live.close()  # closed with events left: now it is an orphan
    assert other.adopt_orphans() > 0
    assert drain(other) == ["p1"]
    other.close()


def test_segments_roll_over_and_keep_their_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=100)
    for n in range(10):
        spool.write(spool.reserve(), [prediction(n)])
    assert spool.directory is not None
    assert len(list(spool.directory.glob("*.seg"))) > 1

    assert drain(spool, limit=3) == [f"p{n}" for n in range(10)]
    assert list(spool.directory.glob("*.seg")) == []
    spool.close()


def test_a_spool_never_written_leaves_no_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "root")
    assert spool.adopt_orphans() == 0
    spool.close()
    assert not (tmp_path / "root").exists() or list((tmp_path / "root").iterdir()) == []


def test_reading_ahead_does_not_move_the_replay_position(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.write(spool.reserve(), [prediction(1), outcome(1), prediction(2), outcome(2)])

    head = spool.read_head(1)
    assert head is not None
    ahead = spool.read_after(head, 1)
    assert ahead is not None
    assert [event_id(event) for _, event in ahead.records] == ["p2", "o2"]
    assert spool.read_after(ahead, 1) is None  # end of the segment

    again = spool.read_head(1)  # nothing committed yet: the head is still the head
    assert again is not None
    assert [event_id(event) for _, event in again.records] == ["p1", "o1"]
    spool.commit(head, 2)
    spool.commit(ahead, 2)
    assert drain(spool) == []
    spool.close()


def test_batches_being_sent_do_not_hold_up_the_queue_but_keep_their_place(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    sending = spool.reserve(sending=True)  # a batch being sent directly
    assert not spool.pending()  # the queue behind it may be sent directly too

    spilled = spool.reserve()  # a caller's spill while it is on its way
    spool.write(spilled, [prediction(3)])
    assert spool.pending()
    assert spool.read_head(10) is None  # the batch being sent may still come here first

    spool.write(sending, [prediction(1), outcome(1)])  # it could not be delivered
    assert drain(spool) == ["p1", "o1", "p3"]
    assert not spool.pending()
    spool.close()


def test_events_come_back_as_the_json_bytes_they_were_logged_as(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    logged = orjson.dumps({"event_id": "p1", "features": {"a": 1.5, "b": None}, "t": "é"})
    spool.write(spool.reserve(), [("prediction", logged)])
    spool.close()
    # a line written in another layout (another writer, key order, spaces) is read all the same
    (directory,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    (segment,) = directory.glob("*.seg")
    with segment.open("ab") as file:
        file.write(b'{"event": {"event_id": "o1", "prediction_id": "p1"}, "kind": "outcome"}\n')

    again = Spool(tmp_path)
    again.adopt_orphans()
    head = again.read_head(10)
    assert head is not None
    assert head.records == [
        ("prediction", logged),
        ("outcome", b'{"event_id":"o1","prediction_id":"p1"}'),
    ]
    again.close()


def test_large_events_are_read_in_full_batches_too(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    big = [
        ("prediction", orjson.dumps({"event_id": f"p{n}", "x": "y" * 10_000})) for n in range(50)
    ]
    spool.write(spool.reserve(), big)

    head = spool.read_head(20)  # 20 events of 10 kB: more than a first read takes

    assert head is not None
    assert [event for _, event in head.records] == [event for _, event in big[:20]]
    spool.commit(head, len(head.records))
    assert drain(spool, limit=20) == [f"p{n}" for n in range(20, 50)]
    spool.close()
