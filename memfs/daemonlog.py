"""The daemon's log: stderr in the foreground (the journal under systemd), else a rotating
file, DATA/state/memfs.log. Everything the daemon tells an operator goes there, the stack
dump of `kill -USR1` included."""

from __future__ import annotations

import faulthandler
import logging
import logging.handlers
import signal
import sys
from pathlib import Path
from typing import TextIO, cast

MAX_BYTES = 10 * 1024 * 1024  # a caller provoking errors in a loop cannot fill the disk
BACKUPS = 3


def _dump_stacks_to(stream: TextIO) -> None:
    """faulthandler writes from C, to an fd, with no lock: it works in a daemon stuck
    holding the GIL, but it must be told again where to write after each rotation."""
    faulthandler.register(signal.SIGUSR1, file=stream, all_threads=True)


class _RotatingLog(logging.handlers.RotatingFileHandler):
    def doRollover(self) -> None:
        super().doRollover()
        if self.stream is not None:
            _dump_stacks_to(cast(TextIO, self.stream))


def setup(debug: bool, log_file: Path | None = None) -> None:
    handler: logging.StreamHandler
    if log_file is not None:
        handler = _RotatingLog(log_file, maxBytes=MAX_BYTES, backupCount=BACKUPS)
        stream = cast(TextIO, handler.stream)  # opened at once (no delay=True)
    else:
        handler = logging.StreamHandler(sys.stderr)
        stream = sys.stderr
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler], force=True)
    if not debug:
        logging.getLogger("pyfuse3").setLevel(logging.WARNING)
    _dump_stacks_to(stream)
