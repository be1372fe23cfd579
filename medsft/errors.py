"""The one error contract of every medsft command.

A `MedsftError` is a failure the user can act on: `medsft.cli` prints its message as one line
(`medsft <command>: <what failed>. <what to do>`) and exits 2. So does an operating-system error that comes
from the machine or a path the user gave (disk full, read-only, a file where a folder belongs: the list is in
medsft.cli). Anything else is a bug and keeps its traceback.
`--debug` or MEDSFT_DEBUG=1 shows the traceback of a MedsftError too.
"""

from __future__ import annotations

EXIT_USAGE = 2


class MedsftError(Exception):
    """A user-facing failure: bad input, a missing file or model, an invalid setting."""
