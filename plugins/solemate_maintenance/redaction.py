"""Keep secrets out of everything a run sends or writes (Slack, SNS, reports).

Airflow's secrets masker already knows every connection password and sensitive extra the task has
touched; the patterns below catch what it cannot know about, such as a URL with credentials inside
an exception message from a library.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REPLACEMENT = "***"

_PATTERNS = [
    # scheme://user:password@host
    (re.compile(r"(?P<keep>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(?=@)"), r"\g<keep>" + REPLACEMENT),
    # Slack incoming-webhook paths: T.../B.../secret
    (re.compile(r"(?P<keep>hooks\.slack\.com/services/)[^\s\"']+"), r"\g<keep>" + REPLACEMENT),
    (re.compile(r"\bT[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{12,}\b"), REPLACEMENT),
    # key=value and "key": "value" pairs whose key names a secret
    (
        re.compile(
            r"(?P<keep>(?i:password|passwd|secret|token|api[_-]?key|aws_secret_access_key)"
            r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}<>]+"
        ),
        r"\g<keep>" + REPLACEMENT,
    ),
    # AWS access key ids
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REPLACEMENT),
    # Bearer credentials and JSON Web Tokens (application logs quote request headers)
    (re.compile(r"(?P<keep>(?i:bearer)\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\g<keep>" + REPLACEMENT),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"), REPLACEMENT),
]


def scrub(value: Any) -> Any:
    """Return `value` (str, or nested dict/list of them) with secrets replaced by ***."""
    if isinstance(value, str):
        from airflow.sdk.log import redact as airflow_redact

        text = airflow_redact(value)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text
    if isinstance(value, dict):
        return {key: scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    return value


def trim(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ScrubFilter(logging.Filter):
    """Scrubs a log record's message before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        record.msg, record.args = scrub(message), ()
        return True


def ensure_log_masking() -> None:
    """Make sure what this process logs goes through Airflow's secrets masker (idempotent).

    Tasks run by a worker log through the supervisor, which masks. ``airflow dags test`` (which the
    README suggests running against production) configures logging without the masker, so every
    registered secret, connection passwords included, would print in clear. This adds the Task SDK's
    own masking processor to structlog's chain, and a scrubbing filter to the root logger's handlers
    for records from standard-library loggers.
    """
    try:
        import structlog
        from airflow.sdk.log import mask_logs
    except ImportError:  # pragma: no cover - both ship with Airflow 3
        return
    processors = structlog.get_config().get("processors")
    # Loggers already bound share this list object, so inserting in place reaches them too.
    if isinstance(processors, list) and mask_logs not in processors:
        processors.insert(max(len(processors) - 1, 0), mask_logs)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())
