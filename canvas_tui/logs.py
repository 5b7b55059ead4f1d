"""`--log-file` / `-v`: HTTP-level logs for headless runs, with every secret masked.

httpx logs one INFO line per request (method, URL, status); the token travels in the
Authorization header, which it never logs, and the filter below masks any value a `Secret` holds
(config.py) and anything shaped like a bearer token or an `access_token` parameter, in case a
message ever quotes one.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Final

MASK: Final = "***"
_SHAPES: Final = re.compile(r"(?i)(bearer\s+|access_token=)[^\s&\"']+")
_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOGGERS: Final = ("canvas_tui", "httpx")


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from canvas_tui.config import Secret

        message = record.getMessage()
        clean = _SHAPES.sub(lambda m: m.group(1) + MASK, message)
        for secret in Secret.known_values():
            if secret and secret in clean:
                clean = clean.replace(secret, MASK)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def setup_logging(log_file: str | None, verbose: int) -> logging.Handler:
    """Send canvas-tui's and httpx's logs to `log_file` (appended) or stderr; -v: requests,
    -vv: debug detail. Returns the handler (tests remove it again)."""
    handler: logging.Handler = (
        logging.FileHandler(log_file, encoding="utf-8")
        if log_file
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(RedactSecrets())
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose else logging.WARNING
    handler.setLevel(level)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(min(logger.level or logging.WARNING, level))
    return handler


def remove_logging(handler: logging.Handler) -> None:
    for name in LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    handler.close()
