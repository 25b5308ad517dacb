"""What happens when a callback raises: a report to a handler, and the loop carries on.

An event loop serves many independent clients; one client's bad request must not take the others
down. So a callback's exception never unwinds the loop: it becomes an `ErrorReport` handed to the
loop's `on_error` handler (by default: logged with the color and traceback) and is counted.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass

logger = logging.getLogger("runtime")


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
