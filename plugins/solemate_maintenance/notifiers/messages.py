"""What people read: failure alerts, common-cause alerts, SMS pages and run digests.

Every message names the date the run checked and its window, and says plainly when the run is a
backfill, a past date or a re-run, so that nobody at 3 a.m. mistakes last Tuesday for now.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from solemate_maintenance.aws_errors import ErrorCause, PermanentAwsError, classify
from solemate_maintenance.config import Alerts
from solemate_maintenance.findings import ChecksFailedError, Finding, Severity
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.run_facts import RunFacts, format_instant
from solemate_maintenance.window import TimeWindow

if TYPE_CHECKING:
    from solemate_maintenance.report import RunReport

MAX_FINDINGS_IN_MESSAGE = 10
SEVERITY_EMOJI = {"P1": ":red_circle:", "P2": ":large_orange_circle:", "P3": ":large_yellow_circle:",
                  "P4": ":large_blue_circle:", None: ":white_check_mark:"}
OK_COLOR = "#2eb886"

# The first thing on-call does for a failing check, by check name (the longest matching prefix wins).
NEXT_STEPS = {
    "application.endpoint": "Open the health URL yourself; if it fails, check the ECS service's recent events and "
                            "the application log group for errors since the window start.",
    "application.alb_targets": "Check the target group's health-check reasons in the EC2 console (Target groups > "
                               "Targets) and the failing tasks' logs.",
    "ecs.service": "Check that the ECS service exists and is ACTIVE in the cluster named in the platform config.",
    "ecs.task_count": "Check the ECS service's Events tab for why tasks stop or cannot be placed (capacity, image "
                      "pull, health check).",
    "ecs.deployments": "Look at the failed deployment's events; roll back to the last good task definition if it "
                       "keeps failing.",
    "ecs": "Check the service's CPU/memory graphs and scaling activity for the window; scale out if it is saturated.",
    "rds.status": "Check the RDS instance's events (failover, maintenance, storage full) in the RDS console.",
    "rds.query": "Try the connection yourself with the platform_db credentials; check the security group and "
                 "max connections.",
    "rds.free_storage": "Grow the allocated storage or enable storage autoscaling before the database stops writing.",
    "rds": "Open Performance Insights for the window: find the top SQL by load and the connections behind it.",
    "elasticache": "Check the Redis cluster's metrics for the window (memory, evictions, CPU); scale the node type "
                   "if it is saturated.",
    "business.payment_success_rate": "Check the payment provider's status page and the application log for payment "
                                     "errors; escalate to the payments owner.",
    "business": "Compare with the same hour last week and check the checkout funnel for errors.",
    "kpi": "Look at the ALB's slowest and 5xx-heavy targets for the day, and recent deployments.",
    "maintenance.task_error": "Open the task log: the check itself broke, so this area was not measured.",
    "security.failed_logins_per_ip": "Block the IPs named above in the WAF (or the ALB's security group) now; then "
                                     "check whether any of their logins succeeded in the application log.",
    "security.credential_stuffing": "Block the IP named above in the WAF; force a password reset for the users it "
                                    "tried if any of its logins succeeded.",
    "security.failed_logins_per_user": "Lock or step up authentication for the user named above and tell the "
                                       "account owner; its attackers use many IPs, so rate-limit its login.",
    "security.rate_limit_violations": "Check whether the IP named above is a partner or a scraper; block it in "
                                      "the WAF if it is not expected.",
    "security.log_query": "Check that the application log group in the platform config exists and that the "
                          "workers may run Logs Insights queries on it (logs:StartQuery).",
    "security.open_ingress": "Remove the rule named above from the security group now (EC2 > Security groups), or "
                             "narrow it to known CIDRs; if it is intended, add it to "
                             "checks.security.open_ingress_allowed.",
    "db.connection": "Check the platform_db connection (host, user, password) and that the workers reach the "
                     "database's security group; the review only reads.",
    "db.long_transaction": "Find the pid in pg_stat_activity and ask its owner; if it is stuck, end it with "
                           "pg_terminate_backend(pid): it holds locks and stops vacuum.",
    "db.xid_age": "Run VACUUM (FREEZE) on the tables with the oldest age(relfrozenxid) now; look for long "
                  "transactions or abandoned replication slots holding it back.",
    "db.connections": "See which service holds the connections (report table) and its pool size; an RDS Proxy or "
                      "a smaller pool per task keeps it under max_connections.",
    "db": "The report lists the recommendations (SQL included); schedule them in the maintenance window.",
    "certificates.endpoint": "Run `openssl s_client -connect HOST:443 -servername NAME` to see what is served, then "
                             "attach the valid ACM certificate to the load balancer's HTTPS listener.",
    "certificates": "Open ACM in the region named: re-import or request the certificate, or fix the DNS "
                    "validation records so ACM can renew it; then check the listener serves the new one.",
    "vulnerabilities": "Rebuild the image on a patched base (or bump the package named in the ECR console), push "
                       "it and redeploy the service; the CVE ids above say what to look for.",
    "capacity": "Open the chart in the report; raise the limit (maximum tasks, instance class, storage) before the "
                "date it shows, or find what grows.",
    "security.s3_public": "Remove the public grant (bucket ACL or policy) and turn on the bucket's public access "
                          "block now, unless the bucket is meant to serve the public; then check its access logs.",
    "security.root": "Sign in as root only to fix this: delete root access keys, enable MFA; check CloudTrail for "
                     "what the root account did (userIdentity.type = Root).",
    "security.cloudtrail": "Start logging on the organisation's multi-region trail (CloudTrail > Trails), or create "
                           "one; until then API activity is not recorded.",
    "security.iam": "Enforce MFA for the user named above, rotate or deactivate the key named above (IAM > Users).",
    "security": "Fix the finding above in the account; Prowler's check id in the report names the control.",
    "cost": "Open Cost Explorer for the month, daily and by usage type, for the service named; confirm the change "
            "is planned or find what is running that should not.",
    "performance": "Look at the days named in the report and the deployments and incidents on them.",
    "summary": "The summary is in the reports bucket (report's stakeholder_summary section); send it by hand.",
    "logs.firehose": "Open the delivery stream in the Firehose console: its error says why (IAM role, destination "
                     "bucket or domain); logs are not reaching the archive until it is ACTIVE.",
    "logs.archive_bucket": "Create the log archive bucket or correct log_lifecycle in the platform config.",
    "backup.rds": "Open the instance in the RDS console (Maintenance & backups): check automated backups, retention "
                  "and the latest snapshot; take a manual snapshot now if the newest is too old.",
    "backup.rds.dr_copy": "Check the copy to the DR region (AWS Backup copy jobs or RDS snapshot copies) and start a "
                          "copy by hand if the newest is too old.",
    "backup.plan": "Compare the AWS Backup plan with backups.rules in the platform config; fix whichever is wrong.",
    "backup.backup_jobs": "Open AWS Backup > Jobs filtered on the database: the status message says why (IAM role, "
                          "KMS key, backup window); then start an on-demand backup.",
    "backup.copy_jobs": "Open AWS Backup > Jobs > Copy jobs: check the DR vault's access policy and KMS key in the "
                        "DR region.",
    "backup.recovery_point": "Start an on-demand backup of the database in AWS Backup now, then find in Jobs why the "
                             "scheduled one did not run.",
    "restore.request": "Read the AWS error in the finding (capacity: try another restore_test.instance_class); then "
                       "clear the restore_request task to try again.",
    "restore.available": "Check the restored instance's events in the RDS console; the teardown deletes it. Clear the "
                         "run to try again.",
    "restore.validation": "The restored copy could not be queried: check the restore_test_db connection's user and "
                          "password and that the workers reach the copy (restore_test.vpc_security_group_ids, port "
                          "5432); then clear the run to test again.",
    "restore.cleanup": "Delete the restore-test instance named in the finding by hand in the RDS console (no final "
                       "snapshot), after checking that it is a restore copy.",
    "restore.cleanup.refused": "Do NOT delete it blindly: nothing was deleted. Find out who created the instance "
                               "named in the finding and why its tags differ; fix restore_test in the platform "
                               "config if its name or prefix is wrong.",
    "restore.janitor": "Check the left-behind restore copy named in the finding in the RDS console; delete it by hand "
                       "(no final snapshot) if it is still there.",
    "restore": "Treat the backup as suspect until a restore validates: read the failed validations in the report, "
               "then restore by hand and compare with production.",
    "monitoring.alarm": "The platform is blind to what this alarm watches: recreate it (or set monitoring.enforce: "
                        "true and clear the alarms task) and give it its severity's SNS topic as action.",
    "monitoring.topic": "Create the SNS topic named in the finding (or correct monitoring.topics), then subscribe "
                        "the on-call e-mail, phone and the Slack integration to it.",
    "monitoring.subscriptions": "Confirm the pending subscription (its e-mail or SMS has the link), or subscribe the "
                                "endpoint again: until then nobody gets those alarms that way.",
    "scaling.target": "Register the ECS service as a scalable target with the guide's min and max tasks (the "
                      "finding has the command); until then it cannot scale out under load.",
    "log_pipeline.subscription": "Put the subscription filter back (aws logs put-subscription-filter, destination "
                                 "the delivery stream named in the finding): the logs since it went are only in "
                                 "CloudWatch.",
    "log_pipeline.freshness": "Open the Firehose stream's monitoring tab: destination errors, throttling or its IAM "
                              "role; records wait up to 24 h, then are lost.",
    "log_pipeline.delivery_stream": "Recreate the delivery stream or correct monitoring.log_pipeline.delivery_stream.",
    "log_pipeline.opensearch": "Run GET _cluster/allocation/explain on the domain; free storage or add nodes.",
}
DEFAULT_NEXT_STEP = "Open the task log, then the report for every measurement."


def next_step_for(check: str) -> str | None:
    """The first thing to do about `check` (the longest matching prefix in NEXT_STEPS), if any."""
    for prefix in sorted(NEXT_STEPS, key=len, reverse=True):
        if check == prefix or check.startswith(prefix + "."):
            return NEXT_STEPS[prefix]
    return None


def next_step(findings: Sequence[Finding]) -> str:
    """What to do first, for the worst failing finding (its diagnosis's step when AWS told more)."""
    for finding in sorted(findings, key=lambda f: f.severity or "P9"):
        step = finding.diagnosis.next_step if finding.diagnosis else None
        step = step or next_step_for(finding.check)
        if step:
            return step
    return DEFAULT_NEXT_STEP


MAX_DIAGNOSIS_CHARS = 2500


def diagnosis_text(findings: Iterable[Finding]) -> str:
    """The failing findings' diagnoses (worst first), each under its resource; what could not be asked is said."""
    parts = []
    for finding in sorted((f for f in findings if f.diagnosis), key=lambda f: f.severity or "P9"):
        lines = [f"`{finding.resource}` ({finding.check}):",
                 *(f"• {slack_escaped(line)}" for line in finding.diagnosis.lines)]
        if finding.diagnosis.missing:
            lines.append(f"• _diagnosis incomplete: {slack_escaped(finding.diagnosis.missing)}_")
        parts.append("\n".join(lines))
    return trim(scrub("\n".join(parts)), MAX_DIAGNOSIS_CHARS)


def finding_lines(findings: Iterable[Finding], *, emoji: bool = True, limit: int = MAX_FINDINGS_IN_MESSAGE) -> str:
    findings = list(findings)
    lines = [(f"{SEVERITY_EMOJI[f.severity]} *{f.severity}* `{f.resource}` " if emoji else
              f"[{f.severity}] {f.resource}: ") + f.summary for f in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"… and {len(findings) - limit} more in the report")
    return "\n".join(lines)


def _duration(start: datetime | None, end: datetime | None) -> str:
    if not start or not end:
        return "unknown"
    seconds = int((end - start).total_seconds())
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def window_label(window: TimeWindow | None) -> str:
    if window is None:
        return "live state at run time"
    start = window.start.strftime("%Y-%m-%d %H:%M") if window.start.date() != window.end.date() \
        else window.start.strftime("%H:%M")
    return f"{start} → {format_instant(window.end)}"


def what_happened(exception: BaseException | None, ti: Any) -> str:
    """The try line, saying what happened instead of 'try 1 of 3 (final: not retried)'."""
    tries = getattr(ti, "try_number", None)
    max_tries = getattr(ti, "max_tries", None)
    if isinstance(exception, ChecksFailedError):
        return "failed on its findings; checks are not retried (the same window gives the same answer)"
    if isinstance(exception, PermanentAwsError):
        return f"failed at once, not retried: {exception.cause.title} cannot heal by retrying"
    if tries is None or max_tries is None:
        return "failed"
    if tries > 1:
        return f"failed on try {tries} of {max_tries + 1} (retried {tries - 1}×, retries exhausted)"
    return f"failed on try {tries} of {max_tries + 1}"


def _facts_blocks(facts: RunFacts, window: TimeWindow | None) -> list[dict]:
    lines = [f"*Checked* {facts.date_label} (window {window_label(window)})"]
    if facts.kind:
        lines.append(f":rewind: *{facts.kind}* — {facts.paging_note}")
    return [{"type": "context", "elements": [{"type": "mrkdwn", "text": "\n".join(lines)}]}]


def failure_message(context: Any, alerts: Alerts, environment: str, facts: RunFacts, now: datetime, *,
                    window: TimeWindow | None = None, already_alerted_by: str | None = None) -> tuple[
        Severity, str, list[dict]]:
    """Build (severity, fallback text, attachments) for a task's final failure."""
    ti = context["ti"]
    exception = context.get("exception")
    findings: Sequence[Finding] = getattr(exception, "findings", None) or []
    # A check that crashed before judging anything is treated as high: we are blind on that area.
    severity = min((f.severity for f in findings if f.severity), default=Severity.P2)
    error = trim(scrub(f"{type(exception).__name__}: {exception}"), 500) if exception else "unknown error"
    title = f"[{severity}] {environment}: {ti.dag_id}.{ti.task_id} failed{facts.headline}"
    fields = {
        "Checked date": facts.date_label,
        "Window": window_label(window),
        "Environment": environment,
        "Task": f"{ti.dag_id}.{ti.task_id}",
        "Run": f"{ti.run_id} ({facts.run_type})",
        "What happened": what_happened(exception, ti),
        "Duration": _duration(getattr(ti, "start_date", None), now),
        "Severity": f"{severity} - {alerts.severities[severity.value].description}",
    }
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": trim(title, 150)}},
        *_facts_blocks(facts, window),
        {"type": "section", "text": {"type": "mrkdwn", "text": ":bust_in_silhouette: " + (
            responder_line(alerts, severity, now) if facts.may_page
            else f"{severity} — a past date: no response time, nobody paged")}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields.items()]},
    ]
    if already_alerted_by:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f":repeat: *Already alerted* by run `{already_alerted_by}`: a repeat of a known problem "
            "(not paged again), not a new incident.")}})
    if findings:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                    "text": f"*Failing findings*\n{finding_lines(findings)}"}})
        diagnosed = diagnosis_text(findings)
        if diagnosed:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Diagnosis*\n{diagnosed}"}})
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Error*\n{code_block(error)}"}})
    cause = classify(exception)
    hint = cause.hint if cause and not isinstance(exception, ChecksFailedError) else next_step(findings)
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*What to do*\n{hint}"}})
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{ti.log_url}|Open the task log>"}})
    attachments = [{"color": alerts.severities[severity.value].color, "fallback": title, "blocks": blocks}]
    return severity, title, attachments


def responder_line(alerts: Alerts, severity: Severity | str, since: datetime, *, escalation_level: int = 0,
                   acknowledged_by: str | None = None, acknowledged_at: datetime | None = None,
                   escalates: bool = False, plain: bool = False) -> str:
    """Who is on and by when: "P1 — respond by 03:17 UTC (15 min); on call: <@U123>", or who took it.

    ``escalates``: an incident the watch escalates (says who is paged next); ``plain``: names, not Slack
    mentions (a web page)."""
    severity = str(severity)
    if acknowledged_by and acknowledged_at:
        return f"{severity} — acknowledged by {acknowledged_by} at {acknowledged_at.astimezone(UTC):%H:%M} UTC"
    minutes = alerts.severities[severity].response_minutes
    # The contact paged at level n was paged n response times in: theirs ends one later.
    due = (since + timedelta(minutes=minutes * (escalation_level + 1))).astimezone(UTC)
    when = f"{due:%H:%M} UTC" if due.date() == since.astimezone(UTC).date() else f"{due:%Y-%m-%d %H:%M} UTC"
    line = f"{severity} — respond by {when} ({_minutes(minutes)})"
    chain = alerts.on_call.chain()
    if chain:
        role, contact = chain[min(escalation_level, len(chain) - 1)]
        name = contact.name if plain else contact.mention
        line += f"; on call: {name}" + (f" ({role})" if role != "primary" else "")
        if escalates and severity == "P1" and escalation_level + 1 < len(chain):
            nxt_role, nxt = chain[escalation_level + 1]
            line += f"; unacknowledged, {nxt.name if plain else nxt.mention} ({nxt_role}) is paged then"
    else:
        line += "; on call: nobody configured (alerts.on_call)"
    return line


def _minutes(minutes: int) -> str:
    return f"{minutes} min" if minutes < 60 or minutes % 60 else f"{minutes // 60} h"


def blocks_as_html(blocks: list[dict]) -> str:
    """A Slack message's blocks as plain HTML lines, for the e-mail copy of an alert."""
    import html

    lines = []
    for block in blocks:
        if isinstance(block.get("text"), dict):
            lines.append(html.escape(block["text"].get("text", "")))
        elif "fields" in block:
            lines += [html.escape(f["text"].replace("\n", ": ", 1)) for f in block["fields"]]
        elif "elements" in block:
            lines.append(" ".join(html.escape(e.get("text", "")) for e in block["elements"]))
    return "<br>".join(line.replace("\n", "<br>") for line in lines)


def slack_escaped(text: str) -> str:
    """Text from AWS or the database shown as text: `&`, `<`, `>` escaped as Slack requires, so SQL like
    `a < $1` reads right and a `<!channel>` in a statement's comment pings nobody."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code_block(text: str) -> str:
    """Text shown verbatim in a Slack code block: `&`, `<` and `>` escaped as Slack requires (so a
    `<!channel>` in an error or a form stays text) and no three backticks that would end the block early."""
    safe = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("```", "` ` `")
    return f"```{safe}```"


def refusal_message(context: Any, alerts: Alerts, environment: str, facts: RunFacts) -> tuple[Severity, str,
                                                                                           list[dict]]:
    """A run refused before it changed anything: what was refused and what to fix, not an incident's
    severity description, and no report to open (a refused run writes none)."""
    ti, exception = context["ti"], context.get("exception")
    severity = Severity.P3
    title = f"[Refused] {environment}: {ti.dag_id} did not start{facts.headline}"
    refusal = trim(scrub(str(exception)), 900)
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": trim(title, 150)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in {
            "Environment": environment, "Refused by": f"{ti.dag_id}.{ti.task_id}",
            "Run": f"{ti.run_id} ({facts.run_type})",
            "Changed": "nothing: refused before any AWS call"}.items()]},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Why*\n{code_block(refusal)}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": (
            "*What to do*\nNothing is broken. If the run was meant: fix what *Why* names, then trigger the DAG "
            "again with the corrected form (Trigger DAG, with config). Otherwise ignore this message.")}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"<{ti.log_url}|Open the task log>"}},
    ]
    return severity, title, [{"color": alerts.severities[severity.value].color, "fallback": title, "blocks": blocks}]


def cause_message(cause: ErrorCause, errors: dict[str, str], alerts: Alerts, environment: str, facts: RunFacts,
                  log_urls: dict[str, str]) -> tuple[Severity, str, list[dict]]:
    """One alert for tasks that failed for one shared cause (e.g. AWS unreachable), instead of one each."""
    severity = Severity.P2
    tasks = sorted(errors)
    retried = "yes, retries exhausted" if cause.retryable else "no: retrying cannot heal this"
    title = (f"[{severity}] {environment}: {facts.dag_id}: {len(tasks)} task{'s' if len(tasks) != 1 else ''} "
             f"could not run: {cause.title}{facts.headline}")
    sample = trim(scrub(next(iter(errors.values()))), 400)
    links = " · ".join(f"<{log_urls[t]}|{t}>" for t in tasks if t in log_urls)
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": trim(title, 150)}},
        *_facts_blocks(facts, None),
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Common cause*\n{cause.title}"},
            {"type": "mrkdwn", "text": f"*Affected tasks*\n{', '.join(tasks)}"},
            {"type": "mrkdwn", "text": f"*Run*\n{facts.run_id} ({facts.run_type})"},
            {"type": "mrkdwn", "text": f"*Retried*\n{retried}"},
        ]},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*What to do*\n{cause.hint}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Error (first task)*\n{code_block(sample)}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "These checks measured nothing: the platform's "
                                     "state for this date is unknown, not healthy."}},
    ]
    if links:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"Task logs: {links}"}})
    return severity, title, [{"color": alerts.severities[severity.value].color, "fallback": title, "blocks": blocks}]


def page_text(title: str, facts: RunFacts, findings: Sequence[Finding], link: str) -> str:
    """The SMS/SNS body: the failing findings themselves, the date checked, and one link."""
    lines = [title, f"Checked: {facts.date_label}; run {facts.run_id}"]
    lines += [f"[{f.severity}] {f.resource}: {f.summary}" for f in findings[:5]]
    if len(findings) > 5:
        lines.append(f"... and {len(findings) - 5} more")
    lines.append(f"Do: {next_step(findings)}")
    lines.append(link)
    return "\n".join(lines)


def _since(finding: Any) -> str:
    if not getattr(finding, "incident_since", None):
        return ""
    return f" — ongoing since {datetime.fromisoformat(finding.incident_since).strftime('%Y-%m-%d %H:%M UTC')}"


def incident_line(incident: dict[str, Any]) -> str:
    """'• P2 payment success rate on SoleMate/Business: 10:00–11:00 UTC (1 h), peak 70 % at 10:05'."""
    from solemate_maintenance.incidents import Incident
    from solemate_maintenance.notifiers.incident_messages import duration, peak_text, span

    started = datetime.fromisoformat(incident["started_at"])
    resolved = datetime.fromisoformat(incident["resolved_at"]) if incident.get("resolved_at") else None
    peak = peak_text(Incident.model_construct(
        peak=incident.get("peak"), unit=incident.get("unit", ""),
        peak_at=datetime.fromisoformat(incident["peak_at"]) if incident.get("peak_at") else None))
    what = f"• *{incident['severity']}* {incident.get('label') or incident['check']} on `{incident['resource']}`: "
    if resolved is None:
        return what + f"open since {started.strftime('%Y-%m-%d %H:%M UTC')}, peak {peak}"
    return what + f"{span(started, resolved)} ({duration(resolved - started)}), peak {peak}"


def digest_message(report: RunReport, colors: dict[str, str]) -> tuple[str, list[dict]]:
    """One Slack digest per run: the date checked, counts, what is new or resolved, a link to the report."""
    from solemate_maintenance.report import Lifecycle

    worst = report.worst_severity
    verdict = "failed" if report.failed_tasks else "passed"
    if report.refreshed_after_rerun:
        verdict += " (updated after a re-run)"
    kind = report.facts.get("run_kind", "live")
    title = (f"{SEVERITY_EMOJI[worst.value if worst else None]} {report.environment}: {report.dag_id} {verdict}"
             f" — {report.checked_label}{report.facts.get('run_tag', '')}")
    status = report.totals["status"]
    severity = ", ".join(f"{k}: {v}" for k, v in report.totals["severity"].items() if v) or "none"
    context_lines = [f"*Checked* {report.checked_label}; {report.windows_label}"]
    if kind != "live":
        context_lines.append(f":rewind: *{kind}* — {report.facts.get('paging', '')}")
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "\n".join(context_lines)}]},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Run*\n{report.run_id} ({report.run_type})"},
            {"type": "mrkdwn", "text": f"*Findings*\nok {status['ok']}, warning {status['warning']}, "
                                       f"critical {status['critical']}, skipped {status.get('skipped', 0)}"},
            {"type": "mrkdwn", "text": f"*By severity*\n{severity}"},
            {"type": "mrkdwn", "text": f"*Failed tasks*\n{', '.join(report.failed_tasks) or 'none'}"},
        ]},
    ]
    for measured in report.measurements.values():
        if measured.get("headline"):
            text = f":stopwatch: *{measured['headline']}*"
            charts = measured.get("charts") or []
            if charts:  # a link per chart (Slack shows no image it cannot fetch; the S3 console can)
                text += "\n" + " · ".join(f"<{c['url']}|{c['title']}>" for c in charts[:6])
                if len(charts) > 6:
                    text += f" · and {len(charts) - 6} more in the report"
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    notes = []
    if report.comparison.get("status") == "impossible":
        notes.append(f":warning: *No comparison with the previous run*: {report.comparison.get('reason')}")
    if report.earlier_runs_for_date:
        notes.append(f":repeat: *{report.checked_label} was already checked* by "
                     f"{', '.join(f'`{r}`' for r in report.earlier_runs_for_date)}; findings alerted then are "
                     "marked _already alerted_.")
    if report.write_error:
        notes.append(f":x: *The report could not be written*: {report.write_error}. Every problem is listed below.")
    for note in notes:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": note}})
    problems = report.problems()
    new = [f for f in problems if f.lifecycle is Lifecycle.NEW and not f.already_alerted_by and not f.incident_since]
    repeated = [f for f in problems if f.already_alerted_by]
    watched = [f for f in problems if f.incident_since and not f.already_alerted_by]
    sections = [("New", new), ("Already alerted for this date", repeated),
                ("Already reported by the watch", watched), ("Resolved", report.resolved)]
    if report.write_error or report.comparison.get("status") == "impossible":
        sections.insert(0, ("All problems", problems))
        sections = [s for s in sections if s[0] != "New"]
    for heading, items in sections:
        if items:
            text = "\n".join(f"• *{f.severity}* `{f.resource}` {f.summary}" + _since(f) for f in items[:10])
            more = f"\n… and {len(items) - 10} more" if len(items) > 10 else ""
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*{heading}*\n{text}{more}"}})
    if report.incidents:
        lines = [incident_line(i) for i in report.incidents[:10]]
        if len(report.incidents) > 10:
            lines.append(f"… and {len(report.incidents) - 10} more in the report")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            "*Incidents in the window (from the watch)*\n" + "\n".join(lines))}})
    elif report.incident_record.startswith("unreadable"):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f":warning: *The watch's incident record could not be read* ({report.incident_record[12:]}): "
            "incidents of the window are not listed.")}})
    links = []
    if report.report_url and not report.write_error:
        links.append(f"<{report.report_url}|Open the report> ({report.report_uri})")
    if report.airflow_url:
        links.append(f"<{report.airflow_url}|Open the run in Airflow>")
    if links:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]})
    color = colors[worst.value] if worst else OK_COLOR
    return title, [{"color": color, "fallback": title, "blocks": blocks}]
