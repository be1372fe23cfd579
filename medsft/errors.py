"""The one error contract of every medsft command.

A `MedsftError` is a failure the user can act on: `medsft.cli` prints its message as one line
(`medsft <command>: <what failed>. <what to do>`) and exits 2. So does an operating-system error that comes
from the machine or a path the user gave (disk full, read-only, a file where a folder belongs: the list is in
medsft.cli). Ctrl-C is one line too (`CommandInterrupted` says what is left and how to go on) and exit 130.
Anything else is a bug and keeps its traceback.
`--debug` or MEDSFT_DEBUG=1 shows the traceback of a MedsftError too.
"""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT: how shells report a command stopped by Ctrl-C


class MedsftError(Exception):
    """A user-facing failure: bad input, a missing file or model, an invalid setting."""


class CommandInterrupted(KeyboardInterrupt):
    """Ctrl-C, with what the interrupted command leaves behind and how to go on: one line, exit 130."""
