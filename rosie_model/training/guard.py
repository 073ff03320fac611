"""What keeps one checkpoint folder to one live trainer.

* :func:`exit_with` — a trainer launched by ``rosie run``, ``rosie demo`` or a Dagster step dies with its
  launcher: the launcher names itself in ``ROSIE_EXIT_WITH`` and, once that process is gone (even after
  ``kill -9``, which no handler sees), the trainer sends itself SIGTERM, so it checkpoints and exits as if
  stopped by hand instead of training on, re-parented to init, beside the next run's trainer.
* :class:`WriterLock` — an exclusive ``flock`` on the phase's lock file for the trainer's lifetime; a
  second trainer on the same folder stops at once with the first one's pid. The kernel drops the lock
  when its holder dies, so a killed trainer never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from pathlib import Path

#: The environment variable a launcher sets to its own pid.
EXIT_WITH = "ROSIE_EXIT_WITH"
POLL_S = 1.0


class FolderBusy(RuntimeError):
    """Another live trainer writes this checkpoint folder."""


def _alive(pid: int) -> bool:  # rosie_pipeline.atomic.process_alive; rosie_model may not import it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_with() -> threading.Thread | None:
    """Watch the process named in ``$ROSIE_EXIT_WITH`` (nothing when unset); SIGTERM this one when it is gone."""
    named = os.environ.get(EXIT_WITH, "")
    if not named.isdigit():
        return None
    launcher = int(named)

    def watch() -> None:
        while _alive(launcher):
            time.sleep(POLL_S)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name=f"exit-with-{launcher}", daemon=True)
    thread.start()
    return thread


class WriterLock:
    """Held from construction until the process ends."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise FolderBusy(f"another trainer (pid {holder}) is writing {path.parent}; wait for it to finish "
                             f"or stop it (kill {holder}), then run again") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
