"""The log pipeline delivers: subscription filters, Firehose delivery, OpenSearch, and the day's errors.

* `LogPipelineOperator`: the application log groups feed the delivery stream; the stream delivered
  recently and delivered what came in; the OpenSearch domain is green with free storage.
* `ApplicationErrorsOperator`: the guide's first log query ("find application errors") as the
  day's error summary: the top messages with counts and first/last seen, new ones marked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from solemate_maintenance.config import LogPipeline
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.metric_queries import MetricQuery
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.window import TimeWindow

FRESHNESS_WINDOW = timedelta(hours=1)
GIB_IN_MB = 1024
# DescribeDeliveryStream's destination key -> the prefix of its CloudWatch metrics. A stream to
# OpenSearch also backs up to S3 (inside its own description): the non-S3 destination is the one.
DELIVERY_METRICS = {
    "AmazonopensearchserviceDestinationDescription": "DeliveryToAmazonOpenSearchService",
    "AmazonOpenSearchServerlessDestinationDescription": "DeliveryToAmazonOpenSearchServerless",
    "ElasticsearchDestinationDescription": "DeliveryToElasticsearch",
    "RedshiftDestinationDescription": "DeliveryToRedshift",
    "SplunkDestinationDescription": "DeliveryToSplunk",
    "HttpEndpointDestinationDescription": "DeliveryToHttpEndpoint",
    "ExtendedS3DestinationDescription": "DeliveryToS3",
    "S3DestinationDescription": "DeliveryToS3",
}


def delivery_metric_prefix(stream: dict[str, Any]) -> str:
    keys = [key for destination in stream.get("Destinations", []) for key in destination]
    for key, prefix in DELIVERY_METRICS.items():  # in order: the first non-S3 destination wins
        if key in keys:
            return prefix
    return "DeliveryToS3"


class LogPipelineOperator(MaintenanceCheckOperator):
    """Beyond "the stream is ACTIVE" (that is `log_lifecycle`'s): logs really arrive where they go.

    * Each log group matching ``subscribed_log_groups`` has a subscription filter to the delivery
      stream (none: P2, its logs reach neither S3 nor OpenSearch).
    * ``DeliveryTo<S3|OpenSearch>.DataFreshness`` in the hour before the run: the oldest record not
      yet delivered; over ``max_data_freshness_seconds`` P2 (delivery stalled). Records arrived but no
      delivery reported: P2 too.
    * Delivered records against incoming ones over the day: under ``min_delivered_percent`` P3.
    * The OpenSearch domain: red P2, yellow P3, free storage under ``min_free_storage_gb`` P3.
    """

    def __init__(self, *, pipeline: LogPipeline, lookback_minutes: int = 24 * 60, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self._lookback = lookback_minutes

    @property
    def lookback_minutes(self) -> int:
        return self._lookback

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        day = TimeWindow.ending_at_run(context, self._lookback)
        stream_name = self.pipeline.delivery_stream
        if stream_name is None:
            yield Finding(check="log_pipeline.delivery_stream", resource="log pipeline", status=Status.SKIPPED,
                          summary="not checked: monitoring.log_pipeline.delivery_stream is not set")
            return
        try:
            stream = self.client("firehose").describe_delivery_stream(
                DeliveryStreamName=stream_name)["DeliveryStreamDescription"]
        except Exception as exc:
            if type(exc).__name__ != "ResourceNotFoundException":
                raise
            yield Finding(check="log_pipeline.delivery_stream", resource=stream_name, status=Status.CRITICAL,
                          severity=Severity.P2, summary="the log delivery stream does not exist: logs are not archived",
                          details={"fix": "check monitoring.log_pipeline.delivery_stream"})
            return
        yield from self._subscriptions(stream["DeliveryStreamARN"])
        yield from self._delivery(stream_name, delivery_metric_prefix(stream), day)
        if self.pipeline.opensearch_domain:
            yield from self._opensearch(self.pipeline.opensearch_domain, day)

    def _subscriptions(self, stream_arn: str) -> Iterable[Finding]:
        logs = self.client("logs")
        groups = [g["logGroupName"] for page in self.pages(logs, "describe_log_groups", max_page=50)
                  for g in page["logGroups"]
                  if any(fnmatchcase(g["logGroupName"], p) for p in self.pipeline.subscribed_log_groups)]
        unsubscribed = []
        for group in groups:
            filters = [f for page in self.pages(logs, "describe_subscription_filters", logGroupName=group)
                       for f in page["subscriptionFilters"]]
            if not any(f.get("destinationArn") == stream_arn for f in filters):
                unsubscribed.append(group)
        if unsubscribed:
            yield Finding(check="log_pipeline.subscription", resource=", ".join(unsubscribed[:3]),
                          status=Status.CRITICAL, severity=Severity.P2,
                          summary=(f"{len(unsubscribed)} log group(s) have no subscription filter to "
                                   f"{stream_arn.rsplit('/', 1)[-1]}: their logs reach neither the archive nor "
                                   f"OpenSearch ({', '.join(unsubscribed[:3])})"),
                          details={"log_groups": unsubscribed[:50],
                                   "fix": "aws logs put-subscription-filter --log-group-name <group> --filter-name "
                                          f"to-firehose --filter-pattern '' --destination-arn {stream_arn} "
                                          "--role-arn <the CloudWatch Logs to Firehose role>"})
        elif groups:
            yield Finding(check="log_pipeline.subscription", resource="log groups", status=Status.OK,
                          summary=f"{len(groups)} application log group(s) feed the delivery stream")
        else:
            yield Finding(check="log_pipeline.subscription", resource="log groups", status=Status.WARNING,
                          severity=Severity.P3,
                          summary=f"no log group matches {', '.join(self.pipeline.subscribed_log_groups)}",
                          details={"fix": "check monitoring.log_pipeline.subscribed_log_groups"})

    def _delivery(self, stream: str, target: str, day: TimeWindow) -> Iterable[Finding]:
        dims = {"DeliveryStreamName": stream}
        recent = TimeWindow(start=day.end - FRESHNESS_WINDOW, end=day.end)
        fresh = self.metrics_hook.get_metric_points([
            MetricQuery(id="freshness", namespace="AWS/Firehose", metric=f"{target}.DataFreshness", dimensions=dims,
                        stat="Maximum", period=300),
            MetricQuery(id="incoming_recent", namespace="AWS/Firehose", metric="IncomingRecords", dimensions=dims,
                        stat="Sum", period=300)], recent)
        totals = self.metrics_hook.get_metric_points([
            MetricQuery(id="incoming", namespace="AWS/Firehose", metric="IncomingRecords", dimensions=dims,
                        stat="Sum", period=3600),
            MetricQuery(id="delivered", namespace="AWS/Firehose", metric=f"{target}.Records", dimensions=dims,
                        stat="Sum", period=3600)], day)
        worst = max((v for _, v in fresh.get("freshness", [])), default=None)
        arrived_recently = sum(v for _, v in fresh.get("incoming_recent", []))
        limit = self.pipeline.max_data_freshness_seconds
        if worst is not None and worst > limit:
            yield Finding(check="log_pipeline.freshness", resource=stream, status=Status.CRITICAL, severity=Severity.P2,
                          summary=(f"delivery stalled: the oldest undelivered record was {worst / 60:.0f} min old "
                                   f"(limit {limit / 60:.0f} min) in the hour to {day.end:%Y-%m-%d %H:%M} UTC"),
                          details={"data_freshness_seconds": worst, "limit_seconds": limit,
                                   "metric": f"{target}.DataFreshness",
                                   "fix": "check the stream's destination errors (Firehose console, "
                                          f"{target}.Success) and its IAM role"})
        elif worst is None and arrived_recently:
            yield Finding(check="log_pipeline.freshness", resource=stream, status=Status.CRITICAL, severity=Severity.P2,
                          summary=(f"{arrived_recently:.0f} records arrived in the hour to {day.end:%H:%M} UTC but "
                                   "nothing was delivered"),
                          details={"fix": "check the stream's destination errors and its IAM role"})
        else:
            yield Finding(check="log_pipeline.freshness", resource=stream, status=Status.OK,
                          summary=(f"delivering: oldest undelivered record {worst / 60:.1f} min old"
                                   if worst is not None else "no records in the last hour"))
        incoming = sum(v for _, v in totals.get("incoming", []))
        delivered = sum(v for _, v in totals.get("delivered", []))
        if incoming and delivered / incoming * 100 < self.pipeline.min_delivered_percent:
            yield Finding(check="log_pipeline.delivered", resource=stream, status=Status.WARNING, severity=Severity.P3,
                          summary=(f"delivered {delivered:.0f} of {incoming:.0f} records in the day "
                                   f"({delivered / incoming * 100:.1f} %, minimum "
                                   f"{self.pipeline.min_delivered_percent:g} %)"),
                          details={"incoming": incoming, "delivered": delivered,
                                   "fix": "look for failed deliveries in the stream's error output prefix"})
        elif not incoming:
            yield Finding(check="log_pipeline.delivered", resource=stream, status=Status.WARNING, severity=Severity.P3,
                          summary=f"no record entered the stream in the day to {day.end:%Y-%m-%d %H:%M} UTC",
                          details={"fix": "check the subscription filters and that the application logs"})
        else:
            yield Finding(check="log_pipeline.delivered", resource=stream, status=Status.OK,
                          summary=f"delivered {delivered:.0f} of {incoming:.0f} records in the day")

    def _opensearch(self, domain: str, day: TimeWindow) -> Iterable[Finding]:
        try:
            status = self.client("opensearch").describe_domain(DomainName=domain)["DomainStatus"]
        except Exception as exc:
            if type(exc).__name__ != "ResourceNotFoundException":
                raise
            yield Finding(check="log_pipeline.opensearch", resource=domain, status=Status.CRITICAL,
                          severity=Severity.P2, summary="the OpenSearch domain does not exist",
                          details={"fix": "check monitoring.log_pipeline.opensearch_domain"})
            return
        dims = {"DomainName": domain, "ClientId": status["ARN"].split(":")[4]}
        recent = TimeWindow(start=day.end - FRESHNESS_WINDOW, end=day.end)
        points = self.metrics_hook.get_metric_points([
            MetricQuery(id=key, namespace="AWS/ES", metric=metric, dimensions=dims, stat=stat, period=300)
            for key, metric, stat in (("red", "ClusterStatus.red", "Maximum"), ("yellow", "ClusterStatus.yellow",
                                                                                 "Maximum"),
                                      ("free", "FreeStorageSpace", "Minimum"))], recent)
        red = max((v for _, v in points.get("red", [])), default=0)
        yellow = max((v for _, v in points.get("yellow", [])), default=0)
        free = min((v for _, v in points.get("free", [])), default=None)
        if red >= 1:
            yield Finding(check="log_pipeline.opensearch", resource=domain, status=Status.CRITICAL,
                          severity=Severity.P2,
                          summary="cluster status red: a primary shard is unassigned, logs are not searchable",
                          details={"fix": "GET _cluster/allocation/explain on the domain; free storage or add nodes"})
        elif yellow >= 1:
            yield Finding(check="log_pipeline.opensearch", resource=domain, status=Status.WARNING, severity=Severity.P3,
                          summary="cluster status yellow: replica shards unassigned",
                          details={"fix": "GET _cluster/allocation/explain; usually too few nodes for the replicas"})
        elif status.get("Processing"):
            yield Finding(check="log_pipeline.opensearch", resource=domain, status=Status.OK,
                          summary="green, a configuration change is being applied")
        else:
            yield Finding(check="log_pipeline.opensearch", resource=domain, status=Status.OK, summary="cluster green")
        minimum = self.pipeline.min_free_storage_gb
        if free is not None and free / GIB_IN_MB < minimum:
            yield Finding(check="log_pipeline.opensearch_storage", resource=domain, status=Status.WARNING,
                          severity=Severity.P3,
                          summary=f"{free / GIB_IN_MB:.1f} GiB free storage (minimum {minimum:g} GiB)",
                          details={"free_gib": round(free / GIB_IN_MB, 1),
                                   "fix": "delete old indices (an ISM policy) or grow the volumes"})


class ApplicationErrorsOperator(MaintenanceCheckOperator):
    """The day's application errors: the top messages with counts, first and last seen; new ones marked.

    Rows come from Logs Insights (``filter <level> in [...]``) and are counted here, like the
    security events (at most ``max_rows`` a day: beyond, the counts are lower bounds and the
    summary says so). A message is "new" when the previous day's summary (kept in the reports
    bucket under ``error-summaries/``) did not have it; a new one seen ``new_error_min_count``
    times or more is P3, the rest of the summary P4 information. Digits and hex ids are masked so
    one error with many order numbers is one line.
    """

    template_fields = (*MaintenanceCheckOperator.template_fields, "log_group")

    def __init__(self, *, log_group: str, pipeline: LogPipeline, bucket: str, reports_prefix: str,
                 lookback_minutes: int = 24 * 60, query_timeout_seconds: float = 300, poll_seconds: float = 2,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log_group = log_group
        self.pipeline = pipeline
        self.bucket = bucket
        self.reports_prefix = reports_prefix
        self._lookback = lookback_minutes
        self.query_timeout_seconds = query_timeout_seconds
        self.poll_seconds = poll_seconds

    @property
    def lookback_minutes(self) -> int:
        return self._lookback

    def query(self) -> str:
        e = self.pipeline.errors
        levels = ", ".join(json.dumps(level) for level in e.levels)
        return (f"fields @timestamp, {e.message_field}, @message | filter {e.level_field} in [{levels}]"
                f" | limit {e.max_rows}")

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        from solemate_maintenance.hooks.logs_insights import run_insights_query
        from solemate_maintenance.redaction import scrub, trim

        e = self.pipeline.errors
        window = TimeWindow.ending_at_run(context, self._lookback)
        rows, matched = run_insights_query(
            self.client("logs"), log_group=self.log_group, window=window, query=self.query(), max_rows=e.max_rows,
            timeout_seconds=self.query_timeout_seconds, poll_seconds=self.poll_seconds,
            timeout_setting="checks.security.query_timeout_seconds")
        summary: dict[str, dict[str, Any]] = {}
        for row in rows:
            # What is shown is the signature: numbers, ids and e-mail addresses masked (order and card
            # numbers, customers), secrets scrubbed; the same error on many orders is one line.
            key = trim(error_signature(scrub(row.get(e.message_field) or row.get("@message") or "")), 200)
            at = _timestamp(row.get("@timestamp", ""))
            entry = summary.setdefault(key, {"message": key, "count": 0, "first": at, "last": at})
            entry["count"] += 1
            if at and (entry["first"] is None or at < entry["first"]):
                entry["first"] = at
            if at and (entry["last"] is None or at > entry["last"]):
                entry["last"] = at
        store = self.report_store(self.bucket, self.reports_prefix)
        day = window.end.date()
        dag_id = context["ti"].dag_id
        yesterday = f"{day - timedelta(days=1):%Y-%m-%d}.json"
        previous = store.read_json(store.key(dag_id, "error-summaries", yesterday)) or {}
        known = set(previous.get("signatures", []))
        ranked = sorted(summary.items(), key=lambda item: (-item[1]["count"], item[0]))
        # Written per checked date: a retry or a re-run of the day rewrites the same object.
        store.write(store.key(dag_id, "error-summaries", f"{day:%Y-%m-%d}.json"), json.dumps({
            "window": window.as_dict(), "signatures": [k for k, _ in ranked],
            "top": [{**v, "first": _iso(v["first"]), "last": _iso(v["last"]), "signature": k} for k, v in ranked[:50]]},
            sort_keys=True))
        table = []
        for key, entry in ranked[:e.top]:
            new = bool(previous) and key not in known
            table.append([("NEW " if new else "") + entry["message"], str(entry["count"]), _hm(entry["first"]),
                          _hm(entry["last"])])
            if new and entry["count"] >= e.new_error_min_count:
                yield Finding(check="logs.errors.new", resource=key[:120], status=Status.WARNING,
                              severity=Severity.P3,
                              summary=(f"new error, {entry['count']}x between {_hm(entry['first'])} and "
                                       f"{_hm(entry['last'])} UTC: {entry['message']}"),
                              details={"count": entry["count"], "first": _iso(entry["first"]),
                                       "last": _iso(entry["last"]),
                                       "fix": f"search {self.log_group} for it in Logs Insights; likely a recent "
                                              "deploy or a failing dependency"})
        total = sum(v["count"] for v in summary.values())
        truncated = len(rows) >= e.max_rows
        yield Finding(check="logs.errors", resource=self.log_group, status=Status.OK,
                      summary=(f"{total}{'+' if truncated else ''} error(s), {len(summary)} distinct, in the day to "
                               f"{window.end:%Y-%m-%d %H:%M} UTC"
                               + ("" if previous else "; no previous summary to mark new ones against")),
                      details={"records_matched": matched, "truncated": truncated})
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": f"Application errors: {total}{'+' if truncated else ''} ({len(summary)} distinct)",
            "errors": total,
            "tables": {"Top application errors": {"columns": ["message", "count", "first (UTC)", "last (UTC)"],
                                                  "rows": table}} if table else {}})


def error_signature(message: str) -> str:
    """The message with numbers and ids masked: one error with many order numbers is one line."""
    import re

    masked = re.sub(r"[\w.+-]+@[\w-]+(\.[\w-]+)+", "<email>", message)
    masked = re.sub(r"\b[0-9a-f]{8}-[0-9a-f-]{27}\b", "<id>", masked, flags=re.IGNORECASE)
    masked = re.sub(r"\b0x[0-9a-f]+\b|\b[0-9a-f]{12,}\b", "<id>", masked, flags=re.IGNORECASE)
    return re.sub(r"\d+", "<n>", masked)


def _timestamp(value: str) -> datetime | None:
    if not value:
        return None
    try:
        if value.isdigit():
            return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
        parsed = datetime.fromisoformat(value.replace(" ", "T"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _hm(value: datetime | None) -> str:
    return f"{value:%H:%M}" if value else "?"
