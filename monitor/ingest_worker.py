"""The CPU side of ingesting a post (matching, repost hash, search lemmas) and the worker processes that
run it for big batches (used by ``monitor/ingest.py``).

This module imports only the matcher and the text helpers of ``monitor.fulltext`` (no SQLAlchemy), so a
worker process starts in a fraction of a second.

Not ``multiprocessing``: its "spawn" start re-runs the parent's main script in every worker (a script
without a ``__main__`` guard then hangs the parent for good), and "fork" would copy the threads the
parent runs (aiosqlite, the export parser) mid-lock. A worker here is ``python -c`` importing this
module, talking length-prefixed pickles over its stdin and stdout: the compiled watchlist once (so it
is built once per worker, never compiled again), then batches of texts. It exits when its stdin
closes, so it never outlives its parent, not even a SIGKILLed one.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Sequence
from dataclasses import fields
from typing import IO, Any

from monitor import fulltext
from monitor.matching import Match, Watchlist

#: One post's analysis as it crosses the process boundary, as plain tuples (they pickle several times
#: faster than dataclasses): matches and link-preview matches as tuples of Match's fields, the repost
#: hash, the search lemmas (None when not wanted).
Analysis = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], str | None, str | None]
_MATCH_FIELDS = tuple(f.name for f in fields(Match))


def analyse_one(watchlist: Watchlist, text: str, preview: str | None, lemmas: bool) -> Analysis:
    """Match one post's text (and link preview), hash it for repost detection, lemmatise it if asked."""
    found = watchlist.find(text) if text else []
    in_preview = watchlist.find(preview) if preview else []
    return ([tuple(getattr(mt, f) for f in _MATCH_FIELDS) for mt in found],
            [tuple(getattr(mt, f) for f in _MATCH_FIELDS) for mt in in_preview],
            fulltext.text_hash(text), fulltext.lemmatize(text) if lemmas else None)


def analyse_many(watchlist: Watchlist, texts: Sequence[tuple[str, str | None]], lemmas: bool) -> list[Analysis]:
    """:func:`analyse_one` for each (text, link preview or None)."""
    return [analyse_one(watchlist, t, pv, lemmas) for t, pv in texts]


class WorkerDied(RuntimeError):
    """A worker process exited (killed, out of memory) before answering."""


def _send(fh: IO[bytes], obj: object) -> None:
    data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    fh.write(len(data).to_bytes(8, "little"))
    fh.write(data)
    fh.flush()


def _recv(fh: IO[bytes]) -> Any:
    head = fh.read(8)
    if len(head) < 8:
        raise EOFError
    size = int.from_bytes(head, "little")
    data = fh.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def worker_main() -> None:
    """The worker process: load the watchlist (and pymorphy3's dictionaries) once, then analyse batches."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops its workers
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print() from any library must not corrupt the protocol on stdout
    inp = sys.stdin.buffer
    try:
        blob, lemmas = _recv(inp)
    except EOFError:
        return
    watchlist: Watchlist = pickle.loads(blob)
    if lemmas:
        fulltext.lemmatize("прогрев словарей")  # load the dictionaries before the first real batch
    _send(out, ("ready", os.getpid()))
    while True:
        try:
            texts, lemmas = _recv(inp)
        except EOFError:
            return
        try:
            reply: tuple[str, object] = ("ok", analyse_many(watchlist, texts, lemmas))
        except Exception:  # the parent raises it where a thread would have
            reply = ("error", traceback.format_exc())
        _send(out, reply)


_BOOT = "import sys; sys.path[:0] = {path!r}; from monitor.ingest_worker import worker_main; worker_main()"


class Worker:
    """One worker process, started (and its watchlist loaded) by the constructor. Its methods block, so
    callers run them in a thread; one request at a time."""

    def __init__(self, blob: bytes, lemmas: bool) -> None:
        """``blob``: the pickled compiled watchlist; ``lemmas``: also load pymorphy3's dictionaries."""
        path = [os.path.abspath(x) if x else os.getcwd() for x in sys.path]
        self.proc = subprocess.Popen([sys.executable, "-c", _BOOT.format(path=path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        self.lock = threading.Lock()
        try:
            self._exchange((blob, lemmas))  # answered once the watchlist and dictionaries are loaded
        except BaseException:
            self.kill()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _exchange(self, msg: object) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self.lock:
            try:
                _send(self.proc.stdin, msg)
                status, value = _recv(self.proc.stdout)
            except (EOFError, OSError, ValueError) as exc:  # ValueError: its pipe closed by kill()
                raise WorkerDied(f"matching worker process {self.proc.pid} exited "
                                 f"(code {self.proc.poll()})") from exc
        if status == "error":
            raise RuntimeError(f"matching worker process failed:\n{value}")
        return value

    def analyse(self, texts: list[tuple[str, str | None]], lemmas: bool) -> list[Analysis]:
        """:func:`analyse_many` in the worker process."""
        return self._exchange((texts, lemmas))

    def kill(self) -> None:
        """Stop the process now (work in progress is abandoned; Popen never signals a reaped pid)."""
        self.proc.kill()
        for fh in (self.proc.stdin, self.proc.stdout):
            if fh is not None:
                try:
                    fh.close()
                except OSError:
                    pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
