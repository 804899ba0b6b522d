"""EC2 listings that page, as on AWS.

moto 5.2.5 returns every security group, volume, snapshot and network interface in one response
and ignores ``MaxResults``/``NextToken``. AWS pages them (volumes at most 500 a page by default, and
callers may ask for less), so a check that forgot the paginator would pass in the sandbox and miss
resources on AWS. This pages those four listings by ``MaxResults`` with an offset token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from moto.ec2.responses.elastic_network_interfaces import ElasticNetworkInterfaces
from moto.ec2.responses.security_groups import SecurityGroups

PAGED = [(SecurityGroups, "describe_security_groups", "SecurityGroups"),
         (ElasticBlockStore, "describe_volumes", "Volumes"),
         (ElasticBlockStore, "describe_snapshots", "Snapshots"),
         (ElasticNetworkInterfaces, "describe_network_interfaces", "NetworkInterfaces")]


def _paged(method: Callable[[Any], ActionResult], key: str) -> Callable[[Any], ActionResult]:
    def listing(self: Any) -> ActionResult:
        result = method(self)
        limit = self._get_int_param("MaxResults")
        token = self._get_param("NextToken")
        if not limit and not token:
            return result
        items = list(result.result[key])
        start = int(token or 0)
        end = start + limit if limit else len(items)
        page: dict[str, Any] = {**result.result, key: items[start:end]}
        if end < len(items):
            page["NextToken"] = str(end)
        return ActionResult(page)

    listing.sandbox_paged = True  # type: ignore[attr-defined]
    return listing


def apply() -> None:
    for cls, name, key in PAGED:
        method = getattr(cls, name)
        if not getattr(method, "sandbox_paged", False):
            setattr(cls, name, _paged(method, key))
