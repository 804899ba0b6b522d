"""S3 replication as the DR drill sees it.

moto 5.2.5 keeps a replication configuration but never replicates and never reports an object's
``ReplicationStatus``. The sandbox copies objects itself (``sandbox/dr.py``) and marks them as S3
does: a source object written under an enabled rule is ``PENDING`` then ``COMPLETED`` (or
``FAILED``), its copy is ``REPLICA``, and an object written while the rule was disabled has no status.
A copy keeps the source's ``LastModified``, as real replicas do.
"""

from __future__ import annotations

from typing import Any

from moto.s3.models import FakeKey

_ORIGINAL: dict[str, Any] = {}


def _response_dict(self: FakeKey) -> dict[str, Any]:
    headers = _ORIGINAL["response_dict"].fget(self)
    status = getattr(self, "_sandbox_replication_status", None)
    if status:
        headers["x-amz-replication-status"] = status
    return headers


def apply() -> None:
    """Install the S3 patch (idempotent)."""
    if _ORIGINAL:
        return
    _ORIGINAL["response_dict"] = FakeKey.response_dict
    FakeKey.response_dict = property(_response_dict)  # type: ignore[assignment]
