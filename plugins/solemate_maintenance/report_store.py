"""Where run reports live in S3: one place for the key layout, reading and browser links.

    <prefix>/<dag_id>/<run_id>/report.json|report.md         one run
    <prefix>/<dag_id>/<run_id>/deliveries/<n>-<kind>.json     what that run already delivered (exactly once)
    <prefix>/<dag_id>/by-logical-date/<YYYY-MM-DDTHHMMZ>/...  the latest report for a checked date
    <prefix>/<dag_id>/latest.json                             the report with the latest logical date
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from solemate_maintenance.report import RunReport


def date_stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H%MZ")


class ReportStore:
    def __init__(self, *, bucket: str, prefix: str, aws_conn_id: str | None, region_name: str | None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    @cached_property
    def s3(self) -> S3Hook:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    def key(self, dag_id: str, *parts: str) -> str:
        return "/".join([self.prefix, dag_id, *parts]) if self.prefix else "/".join([dag_id, *parts])

    def run_key(self, dag_id: str, run_id: str, name: str = "report.json") -> str:
        return self.key(dag_id, run_id, name)

    def date_key(self, dag_id: str, logical_date: datetime, name: str = "report.json") -> str:
        return self.key(dag_id, "by-logical-date", date_stamp(logical_date), name)

    def latest_key(self, dag_id: str) -> str:
        return self.key(dag_id, "latest.json")

    def ledger_key(self, dag_id: str, run_id: str, clear_number: int, kind: str) -> str:
        return self.key(dag_id, run_id, "deliveries", f"{clear_number}-{kind}.json")

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def browse_url(self, key: str) -> str:
        """An https link a browser opens (the S3 console's object page), unlike an s3:// URI."""
        region = self.region_name or "us-east-1"
        return (f"https://s3.console.aws.amazon.com/s3/object/{quote(self.bucket)}"
                f"?region={quote(region)}&prefix={quote(key, safe='')}")

    def read_json(self, key: str) -> Any | None:
        """The object's JSON, None when it does not exist. S3 errors other than not-found raise."""
        if not self.s3.check_for_key(key, bucket_name=self.bucket):
            return None
        return json.loads(self.s3.read_key(key, bucket_name=self.bucket))

    def read_report(self, key: str, log: Any = None) -> RunReport | None:
        """A stored report; None when missing or unreadable (an old corrupt report must not cost today's)."""
        from solemate_maintenance.report import RunReport

        if not self.s3.check_for_key(key, bucket_name=self.bucket):
            return None
        try:
            return RunReport.model_validate_json(self.s3.read_key(key, bucket_name=self.bucket))
        except ValueError as exc:
            if log is not None:
                log.warning("Ignoring unreadable report %s: %s", self.uri(key), exc)
            return None

    def write(self, key: str, text: str) -> None:
        self.s3.load_string(text, key=key, bucket_name=self.bucket, replace=True)
