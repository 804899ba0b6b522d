"""Target health as the load balancer reports it when a health check fails.

moto reports an instance target healthy unless the instance is stopped; it never times out or gets a
wrong status code. The sandbox sets what a failing health check would report per target id
(``HEALTH``: state, reason code, description), and DescribeTargetHealth answers with it.
"""

from __future__ import annotations

from typing import Any

from moto.elbv2.models import FakeHealthStatus, FakeTargetGroup

_ORIGINAL: dict[str, Any] = {}
# target id -> (state, reason, description), e.g. ("unhealthy", "Target.Timeout", "Request timed out")
HEALTH: dict[str, tuple[str, str, str]] = {}


def health_for(self: FakeTargetGroup, target: dict[str, Any], ec2_backend: Any) -> FakeHealthStatus:
    status = _ORIGINAL["health_for"](self, target, ec2_backend)
    staged = HEALTH.get(target["Id"])
    if staged is not None and target["Id"] in self.targets:
        status.status, status.reason, status.description = staged
    return status


def apply() -> None:
    """Install the patch (idempotent)."""
    if _ORIGINAL:
        return
    _ORIGINAL["health_for"] = FakeTargetGroup.health_for
    FakeTargetGroup.health_for = health_for  # type: ignore[method-assign]
