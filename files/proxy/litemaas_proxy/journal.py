"""The spend journal's files: one segment file per run of records, each held with an exclusive ``flock``.

A record is one JSON line (the fields of ``FIELDS``), appended with one ``write()`` on an ``O_APPEND`` file
descriptor: once the call returns the line is in the kernel's page cache and survives a kill -9 of the
process (not a loss of the node: there is no fsync, which would cost milliseconds per request). The lock
of a segment is released by the kernel when its process dies, however it dies, so a process that can take
the lock of a segment knows that its writer is gone and may adopt it. ``spend.SpendWriter`` decides what is
written and when a segment is deleted.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import logging
import os
import time
import uuid
from typing import Optional

import orjson

from litemaas_proxy.values import parse_timestamp

log = logging.getLogger("litemaas_proxy.spend")

FIELDS = ("request_id", "call_type", "api_key", "spend", "total_tokens", "prompt_tokens", "completion_tokens", "start_time", "end_time", "model",
          "model_id", "model_group", "provider", "api_base", "user", "team_id", "metadata", "status", "end_user")
START, END = FIELDS.index("start_time"), FIELDS.index("end_time")
SEGMENT_GLOB = "litemaas-spend-*"  # journal segments, and spill files written by earlier versions (also "*.replaying")
NEW_GLOB = ".litemaas-new-*"  # a segment between its creation and its lock
NEW_GRACE = 60.0  # seconds: a younger such file may belong to a live writer between its two steps


class Segment:
    """One journal file and, while loaded, its records in order. ``done`` records from the front are committed."""

    __slots__ = ("path", "fd", "records", "count", "done", "own", "unwritten")

    def __init__(self, path: Optional[str], fd: Optional[int], own: bool):
        self.path = path
        self.fd = fd
        self.records: Optional[list] = [] if own else None
        self.count = 0  # records in the segment (for an adopted file: lines, until it is read)
        self.done = 0
        self.own = own
        self.unwritten = 0  # records of this segment the journal write failed for: they exist only in memory

    def evictable(self) -> bool:
        return self.records is not None and self.fd is not None and not self.unwritten and self.done == 0


def record_line(rec: tuple) -> bytes:
    """One record as a JSON array in ``FIELDS`` order and a newline (an array: a third of the cost of an object)."""
    return orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE)


def parse_lines(data: bytes, path: str) -> list:
    out = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
            if isinstance(item, dict):  # a spill file of an earlier version: one object per record
                item = [item[f] for f in FIELDS]
            if len(item) != len(FIELDS):
                raise ValueError(f"{len(item)} fields")
            item[START], item[END] = parse_timestamp(item[START]), parse_timestamp(item[END])
            out.append(tuple(item))
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
            # A line cut short by a kill during its write(): that request was never answered (the write comes first).
            log.warning("skipping an unreadable spend journal line in %s (%s: %s)", path, type(exc).__name__, line[:80])
    return out


def read_segment(seg: Segment) -> list:
    with open(seg.path, "rb") as fh:
        return parse_lines(fh.read(), seg.path)


def open_file(directory: str, seg: Segment) -> None:
    """Give ``seg`` a new, locked file. It is locked under a name the adopters do not look at, then renamed:
    nobody can take it for an orphan between its creation and its lock. An adopter removes only such files older
    than ``NEW_GRACE`` (left by a writer that died between the two steps); should one still remove ours between its
    creation and its lock (a writer descheduled that long), the rename fails and a new file is made."""
    for attempt in range(3):
        tmp = os.path.join(directory, f".litemaas-new-{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = os.path.join(directory, f"litemaas-spend-{os.getpid()}-{uuid.uuid4().hex[:16]}.jsonl")
            os.rename(tmp, path)
        except FileNotFoundError:
            os.close(fd)
            if attempt == 2:
                raise
            continue
        except OSError:
            os.close(fd)
            raise
        seg.path, seg.fd = path, fd
        return


def delete(seg: Segment) -> None:
    """Delete a segment's file, then release its lock (in that order: an adopter never takes a committed file)."""
    if seg.fd is None:
        return
    try:
        os.unlink(seg.path)
    except OSError as exc:
        log.warning("could not delete the spend journal %s: %s", seg.path, exc)
    os.close(seg.fd)
    seg.fd = None


def orphans(directory: str, known: set) -> list:
    """Lock and return, as segments not read yet, the journal files in ``directory`` whose writer is dead."""
    out = []
    for path in sorted(glob.glob(os.path.join(directory, SEGMENT_GLOB))):
        if path in known:
            continue
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue  # deleted meanwhile by its writer or another adopter
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            st = os.fstat(fd)
            if st.st_nlink == 0:  # committed and deleted between our open and our lock
                raise BlockingIOError(errno.ENOENT, "deleted")
            lines = os.pread(fd, st.st_size, 0).count(b"\n") if st.st_size else 0
        except OSError:
            os.close(fd)
            continue  # locked: a live process writes or replays it
        seg = Segment(path, fd, False)
        seg.count = lines
        out.append(seg)
        log.info("replaying spend journal %s (%d records) left by a process that is gone", path, lines)
    now = time.time()
    for tmp in glob.glob(os.path.join(directory, NEW_GLOB)):
        try:  # a segment whose writer died between creating and naming it: it holds nothing
            fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            # Unlocked is not enough: a live writer has not locked it yet in the moment between its open and its flock.
            if now - os.fstat(fd).st_mtime > NEW_GRACE:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(tmp)
        except OSError:
            pass
        finally:
            os.close(fd)
    return out
