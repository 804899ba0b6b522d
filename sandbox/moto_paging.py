"""Listings that page as on AWS.

* EC2: moto 5.2.5 returns every security group, volume, snapshot and network interface in one
  response and ignores ``MaxResults``/``NextToken``. AWS pages them when asked, so a check that
  forgot the paginator would pass in the sandbox and miss resources on AWS. These four page by
  ``MaxResults`` with an offset token.
* SSM DescribeParameters: moto serves 10 a page whatever ``MaxResults`` asks (AWS: up to 50), and
  hands out a token for an empty last page; the fleet benchmark would count calls AWS never needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from moto.ec2.responses.elastic_network_interfaces import ElasticNetworkInterfaces
from moto.ec2.responses.security_groups import SecurityGroups
from moto.ssm.responses import SimpleSystemManagerResponse

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


def describe_parameters(self: SimpleSystemManagerResponse) -> ActionResult:
    limit = min(int(self._get_param("MaxResults") or 10), 50)
    start = int(str(self._get_param("NextToken") or "0").strip() or 0)
    found = self.ssm_backend.describe_parameters(self._get_param("Filters"), self._get_param("ParameterFilters"))
    response: dict[str, Any] = {"Parameters": [p.describe_response_object(False) for p in found[start:start + limit]]}
    if start + limit < len(found):
        response["NextToken"] = str(start + limit)
    return ActionResult(response)


def apply() -> None:
    for cls, name, key in PAGED:
        method = getattr(cls, name)
        if not getattr(method, "sandbox_paged", False):
            setattr(cls, name, _paged(method, key))
    SimpleSystemManagerResponse.describe_parameters = describe_parameters  # type: ignore[method-assign]
