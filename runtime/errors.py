"""What happens when a callback raises: a report to a handler, and the loop carries on.

An event loop serves many independent clients; one client's bad request must not take the others
down. So a callback's exception never unwinds the loop: it becomes an `ErrorReport` handed to the
loop's `on_error` handler (by default: logged with the color and traceback) and is counted.

Two kinds of exception are not errors to report and carry on from. SystemExit and KeyboardInterrupt
are requests to stop: reported, they stop the loop, and run() raises them. CancelledError is how a
task is told it was cancelled (runtime/coro.py); inside the task it is the task's outcome, never
reported. It derives from BaseException, as asyncio's does since Python 3.8, so that the common
`except Exception:` around an await (log it and carry on) lets the cancellation through instead of
swallowing it. Escaping a plain callback, outside any task, it is just a bug in that callback
(result() asked of a cancelled task, say): reported like any error, the loop carries on. So the
loop catches `ERRORS`, not `Exception`, wherever it reports and carries on.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass

logger = logging.getLogger("runtime")


class CancelledError(BaseException):
    """Raised inside a coroutine whose task was cancelled, at the `await` it was suspended in.

    A BaseException, as asyncio's: `except Exception:` in a task must not swallow it."""


ERRORS = (Exception, CancelledError)    # what a callback may raise and the loop carry on


@dataclass(frozen=True)
class ErrorReport:
    color: object
    callback: str
    exception: BaseException
    traceback: str
    worker: int

    def __str__(self):
        return (f"callback {self.callback} on color {self.color!r} (worker {self.worker}) raised "
                f"{type(self.exception).__name__}: {self.exception}\n{self.traceback}")


def make_report(color, callback: str, exc: BaseException, worker: int) -> ErrorReport:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ErrorReport(color, callback, exc, text, worker)


def log_report(report: ErrorReport) -> None:
    """The default handler."""
    logger.error("%s", report)
