"""Keep secrets out of everything a run sends or writes (Slack, SNS, reports).

Airflow's secrets masker already knows every connection password and sensitive extra the task has
touched; the patterns below catch what it cannot know about, such as a URL with credentials inside
an exception message from a library.
"""

from __future__ import annotations

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
