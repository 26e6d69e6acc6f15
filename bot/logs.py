"""Logging set-up: fixed key=value messages, and secrets (the bot token, the webhook secret)
never written anywhere — not in messages, not in tracebacks, not in warnings, not from
threads or the event loop's own error reports.

Every path to stderr goes through one handler with `RedactFilter`: uncaught exceptions
(`sys.excepthook`, `threading.excepthook`), the asyncio loop's exception handler and
`warnings` are routed into logging so none of them can print a traceback around it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import types
from collections.abc import Sequence
from typing import Any

REDACTED = "<token>"


class RedactFilter(logging.Filter):
    """Replaces secrets in every record; httpx logs request URLs, which carry the token."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


def setup_logging(level: str, secrets: Sequence[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Request lines name the token in their URL; keep them out even at DEBUG.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # One line per SQL statement drowns everything else at DEBUG.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    # The job scheduler logs two lines per run of every repeating job (the poll tick alone
    # makes about 34,000 a day); its warnings and errors still show.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("telegram.request.BaseRequest").addFilter(_drop_unparsable_answer)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_uncaught


def _drop_unparsable_answer(record: logging.LogRecord) -> bool:
    """python-telegram-bot logs every answer that is not JSON (a proxy's "502 Bad Gateway"
    page during an outage) as an error with its traceback, ~20 lines, and then raises it to
    its caller as a NetworkError naming the status, which the caller logs in one line (the
    getUpdates loop: "getUpdates failed attempt=N"). Only that record is dropped: PTB's other
    errors, and tracebacks of our own bugs, still show."""
    return not str(record.msg).startswith("Can not load invalid JSON data")


def _log_uncaught(
    kind: type[BaseException], value: BaseException, tb: types.TracebackType | None
) -> None:
    logging.getLogger("newsbot").critical("uncaught error", exc_info=(kind, value, tb))


def _log_thread_uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        logging.getLogger("newsbot").error(
            "uncaught error in thread=%s", args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )


def log_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """The event loop's own reports (a task's exception never retrieved…) through logging."""

    def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        logging.getLogger("asyncio").error(
            "event loop error: %s", context.get("message", "?"),
            exc_info=(type(exc), exc, exc.__traceback__) if isinstance(exc, BaseException) else None,
        )

    loop.set_exception_handler(handler)
