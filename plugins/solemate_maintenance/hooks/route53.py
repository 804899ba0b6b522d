"""Route 53 failover records and the DR load balancer they point at (shared by the drill and the failover)."""

from __future__ import annotations

from typing import Any


def public_zone_id(route53: Any, zone_name: str) -> str | None:
    """The public hosted zone named `zone_name` (a private zone of the same name is not what users resolve)."""
    zones = route53.list_hosted_zones_by_name(DNSName=zone_name, MaxItems="100")["HostedZones"]
    public = [z for z in zones if z["Name"] == zone_name and not z.get("Config", {}).get("PrivateZone")]
    return public[0]["Id"].rsplit("/", 1)[-1] if public else None


def failover_records(route53: Any, zone_id: str, record_name: str) -> dict[str, list[dict[str, Any]]]:
    """{'PRIMARY': [...], 'SECONDARY': [...]}: every failover record of the name (A and AAAA alike)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for page in route53.get_paginator("list_resource_record_sets").paginate(
            HostedZoneId=zone_id, StartRecordName=record_name):
        for record in page["ResourceRecordSets"]:
            if record["Name"] != record_name:
                return found  # listed in name order: past the name, nothing more of it
            if record.get("Failover"):
                found.setdefault(record["Failover"], []).append(record)
    return found


def target_of(record: dict[str, Any]) -> str:
    """What a record points at: its alias target's DNS name, else its values."""
    if record.get("AliasTarget"):
        return record["AliasTarget"]["DNSName"].rstrip(".")
    return ",".join(r["Value"].rstrip(".") for r in record.get("ResourceRecords", []))


def load_balancer(elbv2: Any, name: str) -> dict[str, Any] | None:
    """The load balancer `name` in the client's region (its DNSName and CanonicalHostedZoneId), if any."""
    try:
        found = elbv2.describe_load_balancers(Names=[name])["LoadBalancers"]
    except elbv2.exceptions.LoadBalancerNotFoundException:
        return None
    return found[0] if found else None


def pointed_at(record: dict[str, Any], balancer: dict[str, Any]) -> dict[str, Any]:
    """`record` changed to point at `balancer`, keeping its name, type, set identifier, failover role,
    TTL and health check: an alias stays an alias (to the balancer's zone), a CNAME stays a CNAME."""
    updated = {k: v for k, v in record.items() if k not in ("ResourceRecords", "AliasTarget", "TTL")}
    if record.get("AliasTarget"):
        updated["AliasTarget"] = {"HostedZoneId": balancer["CanonicalHostedZoneId"],
                                  "DNSName": balancer["DNSName"], "EvaluateTargetHealth": True}
    else:
        updated["TTL"] = record.get("TTL", 60)
        updated["ResourceRecords"] = [{"Value": balancer["DNSName"]}]
    return updated
