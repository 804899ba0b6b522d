"""ALB 502s and unhealthy targets (the guide's "ALB returning 502 errors").

Who produced the errors (the load balancer's 502/503/504 against the targets' 5xx), each unhealthy
target's health reason and description, and whether the ALB's security group may reach the tasks'
on the container port. Seven calls at most.
"""

from __future__ import annotations

from typing import Any

from solemate_maintenance.troubleshooting import Notes, Session

MAX_TARGET_GROUPS = 2
MAX_TARGETS_SHOWN = 4

REASONS = {
    "Target.ResponseCodeMismatch": "The health check reaches the tasks but gets the wrong status code: check the "
                                   "target group's health-check path and the application's response there.",
    "Target.Timeout": "The health check times out: the tasks are overloaded, or a security group or network ACL "
                      "drops the ALB's traffic to the container port.",
    "Target.FailedHealthChecks": "The tasks refuse the health check's connection: check that the container "
                                 "listens on the target group's port, and the security group rules.",
    "Target.NotRegistered": "No task is registered: the ECS service's tasks are not starting (see the service's "
                            "stopped tasks).",
    "Elb.InternalError": "AWS reports an internal load balancer error: retry, and open an AWS support case if it "
                         "persists.",
}


def _port_allowed(rules: list[dict], port: int, sources: set[str]) -> tuple[bool, str]:
    """Whether any rule lets `port` in from one of the `sources` security groups, and which."""
    for rule in rules:
        protocol = str(rule.get("IpProtocol", ""))
        in_range = protocol == "-1" or (protocol in ("tcp", "6") and
                                        rule.get("FromPort", 0) <= port <= rule.get("ToPort", 65535))
        if not in_range:
            continue
        for pair in rule.get("UserIdGroupPairs", []):
            if pair.get("GroupId") in sources:
                return True, f"from {pair['GroupId']}"
        for cidr in rule.get("IpRanges", []):
            return True, f"from {cidr.get('CidrIp')} (an address range, not the ALB's group)"
    return False, ""


def targets_and_errors(session: Session, check: str, resource: str, notes: Notes) -> None:
    res = session.config.resources
    facts: dict[str, Any] = {"groups": []}

    def balancer() -> None:
        found = session.call("elbv2", "describe_load_balancers", Names=[res.alb.name])["LoadBalancers"]
        facts["balancer"] = found[0]
        groups = session.call("elbv2", "describe_target_groups",
                              LoadBalancerArn=found[0]["LoadBalancerArn"])["TargetGroups"]
        named = resource.split("/", 1)[1] if "/" in resource else None
        facts["groups"] = [g for g in groups if named is None or g["TargetGroupName"] == named] or groups

    def health() -> None:
        for group in facts["groups"][:MAX_TARGET_GROUPS]:
            described = session.call("elbv2", "describe_target_health", TargetGroupArn=group["TargetGroupArn"])
            states = described["TargetHealthDescriptions"]
            bad = [t for t in states if t["TargetHealth"]["State"] != "healthy"]
            notes.add(f"target group {group['TargetGroupName']} (port {group.get('Port')}, health check "
                      f"{group.get('HealthCheckPath', '/')}): {len(states) - len(bad)} of {len(states)} healthy")
            for target in bad[:MAX_TARGETS_SHOWN]:
                state = target["TargetHealth"]
                reason = state.get("Reason", "")
                notes.add(f"target {target['Target']['Id']}:{target['Target'].get('Port', group.get('Port'))} "
                          f"{state['State']}: {reason or 'no reason given'}"
                          + (f" — {state['Description']}" if state.get("Description") else ""))
                if reason in REASONS:
                    notes.advise(REASONS[reason])
            if not states:
                notes.advise(REASONS["Target.NotRegistered"])

    def errors() -> None:
        arn = facts["balancer"]["LoadBalancerArn"]
        dimension = [{"Name": "LoadBalancer", "Value": arn.split(":loadbalancer/", 1)[1]}]
        metrics = {"elb_502": "HTTPCode_ELB_502_Count", "elb_503": "HTTPCode_ELB_503_Count",
                   "elb_504": "HTTPCode_ELB_504_Count", "target_5xx": "HTTPCode_Target_5XX_Count"}
        window = session.window
        answer = session.call("cloudwatch", "get_metric_data", StartTime=window.start, EndTime=window.end,
                              MetricDataQueries=[{"Id": key, "MetricStat": {
                                  "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": name,
                                             "Dimensions": dimension},
                                  "Period": max(60, min(window.seconds, 86400) // 60 * 60), "Stat": "Sum"}}
                                  for key, name in metrics.items()])
        sums = {r["Id"]: sum(r.get("Values", [])) for r in answer.get("MetricDataResults", [])}
        elb = sum(sums.get(k, 0) for k in ("elb_502", "elb_503", "elb_504"))
        target = sums.get("target_5xx", 0)
        notes.add(f"errors in the window: ELB 502 {sums.get('elb_502', 0):.0f}, 503 {sums.get('elb_503', 0):.0f}, "
                  f"504 {sums.get('elb_504', 0):.0f}; target 5xx {target:.0f}")
        if elb > target:
            notes.advise("The load balancer produced most errors (no healthy target, connection refused or timed "
                         "out), not the application.")
        elif target > 0:
            notes.advise("The application returned most errors (target 5xx): read its log group for the window.")

    def security_groups() -> None:
        alb_groups = set(facts["balancer"].get("SecurityGroups", []))
        services = session.call("ecs", "describe_services", cluster=res.ecs.cluster,
                                services=[s.name for s in res.ecs.services][:10])["services"]
        arns = {g["TargetGroupArn"] for g in facts["groups"]}
        paths = []
        for service in services:
            for lb in service.get("loadBalancers", []):
                if lb.get("targetGroupArn") in arns:
                    vpc = service.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
                    paths.append((service["serviceName"], int(lb.get("containerPort") or 0),
                                  vpc.get("securityGroups", [])))
        task_groups = sorted({g for _, _, groups in paths for g in groups})
        if not paths or not task_groups or not alb_groups:
            notes.add("security groups: no ECS service behind these target groups names its security groups")
            return
        described = session.call("ec2", "describe_security_groups", GroupIds=task_groups)["SecurityGroups"]
        by_id = {g["GroupId"]: g for g in described}
        for service, port, groups in paths:
            verdicts = [(g, *_port_allowed(by_id.get(g, {}).get("IpPermissions", []), port, alb_groups))
                        for g in groups]
            allowed = [(g, how) for g, ok, how in verdicts if ok]
            if allowed:
                notes.add(f"security groups: {service}'s port {port} is open to the ALB ({allowed[0][0]} "
                          f"{allowed[0][1]})")
            else:
                notes.add(f"security groups: {service}'s security group(s) {', '.join(groups)} allow no inbound "
                          f"TCP {port} from the ALB's {', '.join(sorted(alb_groups))}: the ALB cannot reach the tasks")
                notes.advise(f"Add an inbound rule to {groups[0]} for TCP {port} from the ALB's security group "
                             f"{sorted(alb_groups)[0]} (the guide: check the security group rules between the ALB "
                             "and ECS).")

    notes.step("the load balancer and its target groups (elbv2:DescribeLoadBalancers, DescribeTargetGroups)", balancer)
    if "balancer" not in facts:
        return
    notes.step("the targets' health (elbv2:DescribeTargetHealth)", health)
    notes.step("ELB against target errors (cloudwatch:GetMetricData)", errors)
    notes.step("the security groups between the ALB and the tasks (ecs:DescribeServices, "
               "ec2:DescribeSecurityGroups)", security_groups)
    # The security-group finding explains the timeouts: say it first.
    notes.next_steps.sort(key=lambda step: 0 if step.startswith("Add an inbound rule") else 1)
