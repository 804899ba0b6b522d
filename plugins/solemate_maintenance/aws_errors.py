"""What an AWS error means for on-call: can a retry heal it, and is it a cause every check shares?

A check that fails on expired credentials or a denied permission fails the same way on every retry;
retrying only delays the alert by minutes. When the cause is platform-wide (no credentials, AWS
unreachable, access denied), every check fails with it at once, and on-call should get one alert
naming the cause instead of one page per check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

_CREDENTIAL_CODES = frozenset({
    "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
    "SignatureDoesNotMatch", "AuthFailure", "InvalidAccessKeyId", "InvalidSignatureException",
})
_ACCESS_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess",
    "AuthorizationError", "Forbidden",
})
_THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "SlowDown", "ProvisionedThroughputExceededException",
})


@dataclass(frozen=True)
class ErrorCause:
    """A classified failure. `key` groups tasks that failed for the same reason."""

    key: str
    title: str
    retryable: bool
    platform_wide: bool
    hint: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorCause:
        """From as_dict() output, ignoring anything stored beside it (errors, task ids)."""
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (e.g. "NoSuchKey"); None for anything else."""
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify(exc: BaseException | None) -> ErrorCause | None:
    """Classify an exception (or anything in its cause chain); None when it is not an AWS error we know."""
    if exc is None:
        return None
    if isinstance(exc, PermanentAwsError):
        return exc.cause
    import botocore.exceptions as bex

    for error in _chain(exc):
        if isinstance(error, bex.NoCredentialsError | bex.PartialCredentialsError | bex.CredentialRetrievalError):
            return ErrorCause("aws-credentials", "no usable AWS credentials", retryable=False, platform_wide=True,
                              hint="check the aws_default connection (or the worker's instance role)")
        if isinstance(error, bex.EndpointConnectionError | bex.ConnectTimeoutError | bex.ConnectionClosedError):
            return ErrorCause("aws-unreachable", "AWS endpoint unreachable", retryable=True, platform_wide=True,
                              hint="check the workers' network path to AWS (NAT, VPC endpoints, DNS, proxy)")
        if isinstance(error, bex.ReadTimeoutError):
            return ErrorCause("aws-timeout", "AWS API timed out", retryable=True, platform_wide=False,
                              hint="usually transient; the task retried it")
        if isinstance(error, bex.ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            operation = getattr(error, "operation_name", "")
            if code in _CREDENTIAL_CODES:
                return ErrorCause("aws-credentials", f"AWS rejected the credentials ({code})", retryable=False,
                                  platform_wide=True, hint="rotate or fix the aws_default connection's keys")
            if code in _ACCESS_CODES:
                return ErrorCause("aws-access-denied", f"AWS denied access ({code})", retryable=False,
                                  platform_wide=True,
                                  hint=f"grant the maintenance role the missing permission (operation {operation})")
            if code in _THROTTLING_CODES:
                return ErrorCause("aws-throttled", f"AWS throttled the calls ({code})", retryable=True,
                                  platform_wide=False, hint="usually transient; the task retried it")
            if code.endswith(("NotFound", "NotFoundException", "NotFoundFault")) or code.startswith("NoSuch"):
                return ErrorCause(f"aws-not-found:{code}", f"AWS resource not found ({code})", retryable=False,
                                  platform_wide=False,
                                  hint="the resource name in the platform config may be wrong, or it was deleted")
    return None


class PermanentAwsError(AirflowFailException):
    """An AWS error a retry cannot heal: fails the task at once (no retries) and keeps the cause."""

    def __init__(self, cause: ErrorCause, error: BaseException) -> None:
        self.cause = cause
        super().__init__(f"{cause.title}; not retried (a retry cannot heal this): {type(error).__name__}: {error}")
