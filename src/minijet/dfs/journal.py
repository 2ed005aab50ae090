"""The nameserver's edit log and checkpoints, in `nameserver.dir`.

- Edits are appended to segment files `edits.<first txid>`; each record is a frame
  [4-byte length][4-byte CRC32][JSON {"t": txid, "r": record}].
- `append` (called under the nameserver's lock, so journal order = apply order) only queues
  the frame; `wait(txid)` returns once it is written and fsync'd: by the caller itself when
  no write is in progress, with everything queued. Callers that arrive while an fsync is
  running share the next one (group commit). A record is on disk only once somebody
  waited for it (or at close): every edit a client or the nameserver relies on is waited.
- A crash can leave a torn or corrupt tail on the newest segment: `recover` truncates it
  (those records were never acknowledged). Damage anywhere else is refused.
- Checkpoint: `roll()` starts a new segment at the same instant the namespace is
  snapshotted; `write_image` writes the snapshot to `image.tmp`, fsyncs, renames it over
  `image`, fsyncs the directory, then deletes the segments the image covers. Start-up loads
  `image` and replays the newer records, so restart time is bounded by the checkpoint period.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from minijet.errors import Unavailable

log = logging.getLogger(__name__)

HEADER = struct.Struct(">II")  # payload length, CRC32 of payload
MAX_RECORD = 64 * 1024**2
IMAGE = "image"
SEGMENT_PREFIX = "edits."


class JournalError(Unavailable):
    """The journal cannot be read or written; the nameserver must not go on."""


def encode_frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode_frames(data: bytes, max_record: int = MAX_RECORD) -> tuple[list[bytes], int]:
    """The intact frames at the start of `data` and the offset where they end."""
    frames, pos = [], 0
    while pos + HEADER.size <= len(data):
        length, crc = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + length
        # a zero length is never written: zeros are space the file system allocated but
        # whose data never reached the disk
        if length == 0 or length > max_record or end > len(data):
            break
        payload = data[pos + HEADER.size:end]
        if zlib.crc32(payload) != crc:
            break
        frames.append(payload)
        pos = end
    return frames, pos


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def segment_path(directory: Path, first_txid: int) -> Path:
    return directory / f"{SEGMENT_PREFIX}{first_txid:020d}"


def segments(directory: Path) -> list[tuple[int, Path]]:
    """(first txid, path) of every edits segment, oldest first."""
    found = []
    for p in directory.glob(SEGMENT_PREFIX + "*"):
        suffix = p.name[len(SEGMENT_PREFIX):]
        if suffix.isdigit():
            found.append((int(suffix), p))
    return sorted(found)


def lock_dir(directory: Path):
    """Hold an exclusive lock on `directory` for this process's life (two nameservers on
    one directory would interleave their journals)."""
    directory.mkdir(parents=True, exist_ok=True)
    f = open(directory / "lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise JournalError(f"{directory} is in use by another nameserver (pid {holder})") from None
    f.truncate(0)
    f.write(str(os.getpid()))
    f.flush()
    return f


@dataclass
class Recovery:
    image: dict | None          # the checkpointed namespace image, if any
    image_txid: int             # last txid the image contains (0: none)
    records: list[dict] = field(default_factory=list)  # newer records, in order
    last_txid: int = 0
    truncated_bytes: int = 0    # torn tail cut off the newest segment


def recover(directory: Path) -> Recovery:
    """Read the image and the edits after it; truncate a torn tail of the newest segment."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / (IMAGE + ".tmp")).unlink(missing_ok=True)
    image, image_txid = None, 0
    image_path = directory / IMAGE
    if image_path.exists():
        data = image_path.read_bytes()
        # one frame, as big as the namespace (a million files make ~70 MB): no record limit
        frames, end = decode_frames(data, max_record=len(data))
        if len(frames) != 1 or end != len(data):
            raise JournalError(f"checkpoint {image_path} is corrupt; restore it from a backup")
        content = json.loads(frames[0])
        image, image_txid = content["namespace"], content["txid"]
    result = Recovery(image, image_txid, last_txid=image_txid)
    segs = segments(directory)
    for i, (first, path) in enumerate(segs):
        if i + 1 < len(segs) and segs[i + 1][0] <= image_txid + 1:
            continue  # wholly covered by the image (left by a crash mid-checkpoint)
        data = path.read_bytes()
        frames, end = decode_frames(data)
        if end != len(data):
            if i != len(segs) - 1:
                raise JournalError(f"edits file {path} is corrupt at byte {end} and is not the "
                                   "newest; refusing to start with a gap in the journal")
            log.warning("truncating torn journal tail: %s bytes at offset %s of %s",
                        len(data) - end, end, path)
            with open(path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
            result.truncated_bytes = len(data) - end
        for payload in frames:
            try:
                entry = json.loads(payload)
                txid = entry["t"]
            except (ValueError, KeyError, TypeError):
                raise JournalError(f"edits file {path} holds an unreadable record after txid "
                                   f"{result.last_txid}") from None
            if txid <= image_txid:
                continue
            if txid != result.last_txid + 1:
                raise JournalError(f"journal gap in {path}: record {txid} follows "
                                   f"{result.last_txid}")
            result.records.append(entry["r"])
            result.last_txid = txid
    return result


def write_image(directory: Path, txid: int, image: dict) -> None:
    """Durably replace the checkpoint with `image` (the namespace as of `txid`), then delete
    the edits segments it covers."""
    payload = json.dumps({"txid": txid, "namespace": image}, separators=(",", ":")).encode()
    tmp = directory / (IMAGE + ".tmp")
    with open(tmp, "wb") as f:
        f.write(encode_frame(payload))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / IMAGE)
    fsync_dir(directory)
    for first, path in segments(directory):
        if first <= txid:
            path.unlink()


class _Roll:
    """Queue marker: close the current segment and start one at `first_txid`."""

    def __init__(self, first_txid: int):
        self.first_txid = first_txid


class Journal:
    """Appends records after `last_txid` to a fresh segment, with group commit."""

    def __init__(self, directory: Path, last_txid: int):
        self.directory = directory
        self._cond = threading.Condition()
        self._queue: list[tuple[int, bytes] | _Roll] = []
        self._last_txid = last_txid   # last assigned
        self._synced_txid = last_txid  # last durable
        self._error: BaseException | None = None
        self._writing = False          # a waiter is writing the queue out
        self._file = self._open_segment(last_txid + 1)

    @property
    def last_txid(self) -> int:
        return self._last_txid

    def _open_segment(self, first_txid: int):
        f = open(segment_path(self.directory, first_txid), "ab")
        fsync_dir(self.directory)
        return f

    def append(self, record: dict) -> int:
        """Queue one record; return its txid. Callers serialise calls (the core lock)."""
        payload = json.dumps({"t": self._last_txid + 1, "r": record},
                             separators=(",", ":")).encode()
        frame = encode_frame(payload)
        with self._cond:
            if self._error is not None:
                raise JournalError(f"journal failed: {self._error}")
            self._last_txid += 1
            self._queue.append((self._last_txid, frame))
            return self._last_txid

    def roll(self) -> int:
        """Start a new segment after the records appended so far; return the last txid of
        the old one (what a snapshot taken now contains)."""
        with self._cond:
            self._queue.append(_Roll(self._last_txid + 1))
            return self._last_txid

    def wait(self, txid: int) -> None:
        """Block until record `txid` is on disk (fsync'd). The caller that finds no write
        in progress writes and fsyncs everything queued itself (HDFS's logSync): no thread
        hand-off per edit; callers that arrive meanwhile share the next fsync."""
        with self._cond:
            while self._synced_txid < txid and self._error is None:
                if self._writing:
                    self._cond.wait()
                elif self._queue:
                    self._write_queued()
                else:
                    raise ValueError(f"journal record {txid} was never appended")
            if self._synced_txid < txid:
                raise JournalError(f"journal failed: {self._error}")

    def _write_queued(self) -> None:
        """With the condition held and no write in progress: write and fsync the queue,
        letting go of the condition meanwhile so that appends go on."""
        items, self._queue, self._writing = self._queue, [], True
        self._cond.release()
        top, error = None, None
        try:
            batch = []
            for item in items:
                if isinstance(item, _Roll):
                    self._sync_out(batch)
                    self._file.close()
                    batch = []
                    self._file = self._open_segment(item.first_txid)
                else:
                    top = item[0]
                    batch.append(item[1])
            self._sync_out(batch)
        except BaseException as e:  # disk full, I/O error: every waiter must hear of it
            log.critical("journal write failed: %s", e)
            error = e
        finally:
            self._cond.acquire()
            self._writing = False
            if error is not None:
                self._error = error
            elif top is not None:
                self._synced_txid = top
            self._cond.notify_all()

    def _sync_out(self, frames: list[bytes]) -> None:
        self._file.write(b"".join(frames))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Write and fsync everything queued, then close the segment."""
        with self._cond:
            while self._writing:
                self._cond.wait()
            if self._queue and self._error is None:
                self._write_queued()
        self._file.close()
        if self._error is not None:
            raise JournalError(f"journal failed: {self._error}")
