"""Errors a user can fix, shared by every command (standard library only).

`mlplat` prints an exception whose class sets `user_error = True` as `mlplat <command>: <message>` and
exits 2, without a traceback: bad input, an invalid stack file, a local service that does not answer.
Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what is wrong and, where there is one, the fix."""

    user_error = True


class ServiceDown(UserError):
    """A service a command needs did not answer within the command's bounded wait."""

    def __init__(self, service: str, address: str, reason: str, fix: str) -> None:
        self.service, self.address, self.reason, self.fix = service, address, reason, fix
        super().__init__(f"{service} at {address} is not answering ({reason}); {fix}")
