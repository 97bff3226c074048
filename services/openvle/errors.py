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
