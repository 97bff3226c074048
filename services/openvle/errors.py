"""Exceptions jobs raise to steer their Task.

Any other exception is treated as transient: the attempt fails and RQ retries it on the queue's
intervals until the retries are used up.
"""


class PermanentError(Exception):
    """Retrying cannot help (a bad recipient, a template that does not exist, a rejected parameter).

    The Task fails at once, with this message, and no further attempt is made.
    """


class UnknownOperation(LookupError):
    """No job function is registered under this operation name."""


class QueueUnavailable(Exception):
    """The Task was saved but Redis did not take its job; the reconciler enqueues it later."""

    def __init__(self, task_id: int, cause: Exception):
        super().__init__(
            f"task {task_id} was saved but could not be queued ({type(cause).__name__}); "
            "it will be queued automatically once Redis answers again"
        )
        self.task_id = task_id


class RequestError(Exception):
    """A request that cannot be honoured as asked; the message names the problem and the fix.

    The API answers with `status`; the CLI prints the message. Raised by the service layer and the
    accounts, never by job bodies.
    """

    status = 400


class Invalid(RequestError):
    status = 422


class Unauthenticated(RequestError):
    status = 401


class Forbidden(RequestError):
    """The caller sees the object but their role may not do this to it."""

    status = 403


class NotFound(RequestError):
    """Does not exist, or the caller may not see it: the two answers are the same on purpose."""

    status = 404


class Conflict(RequestError):
    """The object's state does not allow it now (a deploy of an archived event, a template in use)."""

    status = 409


class TooSoon(RequestError):
    """Allowed again only later (a fresh start within RESET_TO_TEMPLATE_COOLDOWN): the message says when."""

    status = 429

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
