"""Errors of the login flows. Their messages are safe to show and to log (no secrets)."""


class LoginError(Exception):
    """A login attempt was refused.

    :param reason: shown to the browser and logged; names what failed, never a secret.
    :param code: a short, stable refusal code for counting (see :mod:`keyplane.app.audit`).
    """

    def __init__(self, reason: str, *, status: int = 403, code: str = "login.refused") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.code = code
