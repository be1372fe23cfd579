"""A command run in a pseudo-terminal, as a person runs it: input typed, output read with timeouts.

A program that waits for input it was not sent (a login prompt) makes `read_until` / `wait` time out, so
tests fail instead of hanging.
"""

from __future__ import annotations

import codecs
import os
import pty
import select
import signal
import time
from collections.abc import Callable


class Terminal:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | None = None):
        pid, fd = pty.fork()
        if pid == 0:  # child: the pty is its controlling terminal, stdin, stdout and stderr
            try:
                if cwd:
                    os.chdir(cwd)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.transcript = ""
        self.exit_code: int | None = None

    def _read(self, seconds: float) -> bool:
        """Read what arrives within `seconds`; False once the terminal is closed (the program ended)."""
        ready, _, _ = select.select([self.fd], [], [], seconds)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.transcript += self.decoder.decode(data)
        return bool(data)

    def _drain(self) -> None:
        while select.select([self.fd], [], [], 0.05)[0]:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            self.transcript += self.decoder.decode(data)

    def read_until(self, text: str, timeout: float, start: int = 0) -> str:
        """The transcript from `start` up to and including the first `text` after `start`."""
        deadline = time.monotonic() + timeout
        while text not in self.transcript[start:]:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(min(remaining, 0.5)):
                if text in self.transcript[start:]:
                    break
                shown = self.transcript[-3000:]
                raise AssertionError(f"{text!r} did not appear within {timeout:g} s:\n{shown}")
        end = self.transcript.index(text, start) + len(text)
        return self.transcript[start:end]

    def send(self, text: str) -> int:
        """Type `text`; returns the transcript position before it (for read_until's `start`)."""
        position = len(self.transcript)
        os.write(self.fd, text.encode("utf-8"))
        return position

    def exited_within(self, seconds: float) -> bool:
        """Whether the program ends within `seconds`, reading output meanwhile; otherwise it keeps running."""
        if self.exit_code is not None:
            return True
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read(0.2)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._drain()
                self.exit_code = os.waitstatus_to_exitcode(status)
                return True
        return False

    def wait(self, timeout: float) -> int:
        """The exit code, reading output meanwhile; a program still running after `timeout` is killed."""
        if self.exited_within(timeout):
            return self.exit_code
        self.close()
        raise AssertionError(f"still running after {timeout:g} s:\n{self.transcript[-3000:]}")

    def press_at_prompt(self, key: str, answered: Callable[[int], bool], tries: int = 3) -> None:
        """Type a control key once the program waits at its prompt, as a person does, until
        `answered(transcript position before the key)`. A key typed the instant a prompt appears can be lost:
        Python's readline sees a SIGINT that comes before it waits only at the next key, and a Ctrl-D typed
        before readline takes the terminal over is dropped. Hence a pause first and up to `tries` presses."""
        for _ in range(tries):
            time.sleep(1.0)
            if answered(self.send(key)):
                return
        raise AssertionError(f"{key!r} pressed {tries} times, no effect:\n{self.transcript[-3000:]}")

    def shows_within(self, text: str, seconds: float, start: int) -> bool:
        """Whether `text` appears after `start` within `seconds`."""
        try:
            self.read_until(text, timeout=seconds, start=start)
        except AssertionError:
            return False
        return True

    def close(self) -> None:
        if self.exit_code is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.exit_code = -9
        os.close(self.fd)
