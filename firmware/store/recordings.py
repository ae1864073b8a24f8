"""Where recordings live on the SD card, and how space is kept free.

Files are ``<data_dir>/recordings/YYYY/MM/DD/HHMMSS_<caller>_<callee>_<call>.wav`` (local
date and time of the office's time zone). Names are built by the box from sanitised parts
(never from a path a client sent); :meth:`Recordings.resolve` is the only way from a stored
relative path back to a file and refuses anything outside the recordings folder.

Retention (:meth:`Recordings.enforce`): recordings older than ``max_age_days`` are deleted
(0 keeps them), then the oldest recordings are deleted until ``min_free_mb`` is free again.
Recordings of calls still in progress are never deleted. The call record survives: it says
``recording_state = "deleted"`` with the reason in ``recording_note``.
:meth:`Recordings.may_record` tells the PBX whether a new recording may start; when even
deleting every old recording leaves too little space it says no, with an alarm text, and
calls go on unrecorded.

Starting a recording touches the disk as little as possible: a free-space reading at least
``free_margin_mb`` (64 MB, many seconds of every recording at once) above the threshold is
reused for ``free_check_s`` (one second; nearer the threshold space is read every time, as
before), folders are created once,
and names are made unique against the names this process handed out (a name holds the
second, both parties and the call's uuid, so another run cannot have made it).
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import shutil
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

log = logging.getLogger("firmware.store.recordings")

__all__ = ["Recordings", "RecordingPathError", "RecordingPermission", "RetentionResult", "repair_wav"]

_REL_RE = re.compile(r"^recordings/[0-9]{4}/[0-9]{2}/[0-9]{2}/[A-Za-z0-9][A-Za-z0-9_+.-]{0,120}\.wav$")
MIB = 1024 * 1024


class RecordingPathError(ValueError):
    """A recording path that is not one the box made (traversal, absolute, wrong form)."""


@dataclass(frozen=True)
class RecordingPermission:
    """Answer of :meth:`Recordings.may_record`."""

    allowed: bool
    free_bytes: int
    reason: str = ""
    """Why not (an alarm for the web page and the log); "" when allowed."""


@dataclass(frozen=True)
class RetentionResult:
    """What :meth:`Recordings.enforce` did."""

    deleted: list[tuple[str, str]] = field(default_factory=list)
    """(relative path, reason) of every deleted recording, oldest first."""
    freed_bytes: int = 0
    free_bytes: int = 0
    """Free space afterwards."""
    alarm: str = ""
    """Set when space is still below the threshold with nothing left to delete."""


def _clean(part: str, limit: int = 24) -> str:
    s = re.sub(r"[^A-Za-z0-9+]", "", part or "")[:limit]
    return s or "x"


class Recordings:
    """Recording files of one box.

    ``calls`` is the :class:`~firmware.store.calls.CallStore` whose records are updated when
    a recording is deleted (None: files only). ``free_bytes(path)`` returns the free space
    of the file system holding ``path`` (injectable; default ``shutil.disk_usage``).
    """

    def __init__(self, data_dir: str | os.PathLike, calls: Any = None, *, min_free_mb: int = 500,
                 max_age_days: int = 0, timezone: str = "UTC",
                 free_bytes: Callable[[Path], int] | None = None, clock: Callable[[], float] = time.time,
                 free_check_s: float = 1.0, free_margin_mb: int = 64,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "recordings"
        self.root.mkdir(parents=True, exist_ok=True)
        self.calls = calls
        self.min_free_bytes = int(min_free_mb) * MIB
        self.max_age_days = int(max_age_days)
        self.tz = ZoneInfo(timezone)
        self._free = free_bytes or (lambda p: shutil.disk_usage(p).free)
        self.clock = clock
        self._active: set[str] = set()
        self._lock = threading.Lock()
        self.free_check_s = free_check_s
        self.free_margin_bytes = int(free_margin_mb) * MIB
        self._mono = monotonic
        self._free_ok_until = float("-inf")
        self._free_ok = 0
        self._made = ""             # the folder allocate() made last (retention may remove it)
        self._folder = ""           # the folder of the names below
        self._names: set[str] = set()  # names handed out in that folder
        self.alarm = ""
        """The last alarm of :meth:`may_record` / :meth:`enforce` ("" when space is fine)."""

    def configure(self, *, min_free_mb: int | None = None, max_age_days: int | None = None,
                  timezone: str | None = None) -> None:
        """Apply changed settings (config store subscribers call this)."""
        if min_free_mb is not None:
            self.min_free_bytes = int(min_free_mb) * MIB
            self._free_ok_until = float("-inf")
        if max_age_days is not None:
            self.max_age_days = int(max_age_days)
        if timezone is not None:
            self.tz = ZoneInfo(timezone)

    # ------------------------------------------------------------------ paths

    def allocate(self, call_id: str, *, started_at: float | None = None, caller: str = "",
                 callee: str = "") -> tuple[str, Path]:
        """A new file name for a call's recording: (path relative to the data dir, absolute path).

        The folder is created; the file is marked active (never deleted by retention) until
        :meth:`finished`.
        """
        t = _dt.datetime.fromtimestamp(started_at if started_at is not None else self.clock(), self.tz)
        folder = f"recordings/{t:%Y/%m/%d}"
        base = f"{t:%H%M%S}_{_clean(caller)}_{_clean(callee)}_{_clean(call_id, 12)}"
        with self._lock:
            if folder != self._made:
                (self.data_dir / folder).mkdir(parents=True, exist_ok=True)
                self._made = folder
            if folder != self._folder:
                self._folder, self._names = folder, set()
            rel = f"{folder}/{base}.wav"
            n = 1
            while rel in self._names:
                n += 1
                rel = f"{folder}/{base}-{n}.wav"
            self._names.add(rel)
            self._active.add(rel)
        return rel, self.data_dir / rel

    def finished(self, rel_path: str) -> None:
        """The recording is closed; retention may delete it when it is the oldest."""
        with self._lock:
            self._active.discard(rel_path)

    def resolve(self, rel_path: str) -> Path:
        """The file of a stored relative path; :class:`RecordingPathError` for anything else
        (absolute paths, ``..``, other folders, other names)."""
        if not isinstance(rel_path, str) or not _REL_RE.match(rel_path) or ".." in rel_path:
            raise RecordingPathError(f"not a recording path: {rel_path!r}")
        p = (self.data_dir / rel_path).resolve()
        root = self.root.resolve()
        if root not in p.parents:
            raise RecordingPathError(f"not a recording path: {rel_path!r}")
        return p

    def _walk(self) -> list[str]:
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(".wav"):
                    out.append(os.path.relpath(os.path.join(dirpath, name), self.data_dir).replace(os.sep, "/"))
        out.sort()
        return out

    # ------------------------------------------------------------------ retention

    def free_bytes(self) -> int:
        """Free space on the recordings' file system, in bytes."""
        return int(self._free(self.root))

    def may_record(self) -> RecordingPermission:
        """Whether a new recording may start now (runs retention when space is short).

        A reading well above the threshold is reused for ``free_check_s``; others never are."""
        now = self._mono()
        if now < self._free_ok_until:
            return RecordingPermission(True, self._free_ok)
        free = self.free_bytes()
        if free >= self.min_free_bytes:
            self.alarm = ""
            if free >= self.min_free_bytes + self.free_margin_bytes:
                self._free_ok, self._free_ok_until = free, now + self.free_check_s
            return RecordingPermission(True, free)
        result = self.enforce()
        if result.alarm:
            return RecordingPermission(False, result.free_bytes, result.alarm)
        return RecordingPermission(True, result.free_bytes)

    def _busy(self, rel: str) -> bool:
        with self._lock:
            if rel in self._active:
                return True
        if self.calls is not None:
            return self.calls.recording_state_of(rel) == "recording"
        return False

    def enforce(self) -> RetentionResult:
        """Delete recordings past ``max_age_days``, then the oldest until enough space is free."""
        deleted: list[tuple[str, str]] = []
        freed = 0
        self._free_ok_until = float("-inf")
        files = self._walk()
        if self.max_age_days > 0:
            cutoff = _dt.datetime.fromtimestamp(self.clock() - self.max_age_days * 86400, self.tz)
            limit = f"recordings/{cutoff:%Y/%m/%d}/{cutoff:%H%M%S}"
            reason = f"deleted after {self.max_age_days} days (retention)"
            keep = []
            for rel in files:
                if rel < limit and not self._busy(rel):
                    freed += self._delete(rel, reason, deleted)
                else:
                    keep.append(rel)
            files = keep
        free = self.free_bytes()
        reason = f"deleted to keep {self.min_free_bytes // MIB} MB free on the SD card (oldest first)"
        for rel in files:
            if free >= self.min_free_bytes:
                break
            if self._busy(rel):
                continue
            freed += self._delete(rel, reason, deleted)
            free = self.free_bytes()
        alarm = ""
        if free < self.min_free_bytes:
            alarm = (f"disk almost full: {free // MIB} MB free, {self.min_free_bytes // MIB} MB needed, "
                     "no old recordings left to delete; new calls are not recorded")
            log.error(alarm)
        self.alarm = alarm
        if deleted:
            log.warning("retention deleted %d recording(s), %d bytes", len(deleted), freed)
        return RetentionResult(deleted, freed, free, alarm)

    def _delete(self, rel: str, reason: str, deleted: list[tuple[str, str]]) -> int:
        path = self.data_dir / rel
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        except OSError as e:
            log.error("cannot delete recording %s: %s", rel, e)
            return 0
        deleted.append((rel, reason))
        if self.calls is not None:
            self.calls.recording_deleted(rel, reason)
        parent = path.parent
        with self._lock:
            self._made = ""     # allocate() makes the folder again if it goes now
        while parent != self.root and parent.is_dir():
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return size


def repair_wav(path: str | os.PathLike) -> bool:
    """Fix the RIFF and data chunk sizes of a WAV cut short by a power loss or a kill.

    A recorder writes the header first with sizes it cannot know yet; after a crash they are
    wrong. The data chunk is set to the whole rest of the file (trimmed to whole sample
    frames). Returns True when the header was changed, False when it was already right.
    Raises ``ValueError`` for a file that is not a RIFF/WAVE file with fmt and data chunks.
    """
    with open(path, "r+b") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ValueError(f"{os.fspath(path)} is not a WAV file")
        size = os.fstat(f.fileno()).st_size
        pos = 12
        block_align = 1
        while True:
            f.seek(pos)
            hdr = f.read(8)
            if len(hdr) < 8:
                raise ValueError(f"{os.fspath(path)} has no data chunk")
            cid, clen = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(16)
                if len(fmt) == 16:
                    block_align = max(1, struct.unpack("<H", fmt[12:14])[0])
            if cid == b"data":
                data_start = pos + 8
                break
            pos += 8 + clen + (clen & 1)
        data_len = size - data_start
        data_len -= data_len % block_align
        changed = False
        if clen != data_len:
            f.seek(data_start - 4)
            f.write(struct.pack("<I", data_len))
            changed = True
        riff = data_start + data_len - 8
        if struct.unpack("<I", head[4:8])[0] != riff:
            f.seek(4)
            f.write(struct.pack("<I", riff))
            changed = True
        if size > data_start + data_len:
            f.truncate(data_start + data_len)
            changed = True
        if changed:
            f.flush()
            os.fsync(f.fileno())
        return changed
