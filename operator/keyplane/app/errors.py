"""Errors of the login flows. Their messages are safe to show and to log (no secrets)."""


class LoginError(Exception):
    """A login attempt was refused."""

    def __init__(self, reason: str, *, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
