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
    from solemate_maintenance.run_facts import RunFacts


class ObjectNotReadable(Exception):
    """S3 answered 403: the key is missing (without s3:ListBucket) or may not be read."""


class ObjectArchived(ObjectNotReadable):
    """The object is in Glacier (the reports bucket's lifecycle moved it): it must be restored to be read."""


def date_stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H%MZ")


class ReportStore:
    def __init__(self, *, bucket: str, prefix: str, aws_conn_id: str | None, region_name: str | None,
                 quick: bool = False, cache_reads: bool = False) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        # quick: for look-ups that only annotate an alert; one short attempt instead of botocore's retries.
        self.quick = quick
        # Keys a read found in Glacier: the dashboard and the reviews say so instead of failing.
        self.archived: list[str] = []
        # cache_reads: for one task that reads the same reports from several angles (a review); never
        # for a store that writes what it then reads back.
        self._texts: dict[str, str | None] | None = {} if cache_reads else None
        self._stamps: dict[str, list[str]] | None = {} if cache_reads else None

    @cached_property
    def s3(self) -> S3Hook:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        if self.quick:
            from botocore.config import Config

            config = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 1, "mode": "standard"})
            return S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name, config=config)
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

    def read_text(self, key: str) -> str | None:
        """The object's text; None when it does not exist. Raises :class:`ObjectNotReadable` on 403.

        GetObject, not HEAD + GET: it needs no s3:ListBucket. Without that permission S3 answers a
        missing key with 403, so 403 means "missing or not ours to read", and the caller decides.
        """
        from botocore.exceptions import ClientError

        if self._texts is not None and key in self._texts:
            return self._texts[key]
        try:
            body = self.s3.conn.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                if self._texts is not None:
                    self._texts[key] = None
                return None
            if code == "InvalidObjectState":
                self.archived.append(key)
                raise ObjectArchived(f"{self.uri(key)} is in Glacier (restore it to read it)") from exc
            if code in ("AccessDenied", "403", "Forbidden"):
                raise ObjectNotReadable(f"{self.uri(key)}: {code}") from exc
            raise
        text = body.decode("utf-8")
        if self._texts is not None:
            self._texts[key] = text
        return text

    def read_json(self, key: str) -> Any | None:
        """The object's JSON, None when it does not exist or may not be read."""
        try:
            text = self.read_text(key)
        except ObjectNotReadable:
            return None
        return None if text is None else json.loads(text)

    def read_report(self, key: str, log: Any = None) -> RunReport | None:
        """A stored report; None when missing or unreadable (an old corrupt report must not cost today's)."""
        from solemate_maintenance.report import RunReport

        try:
            text = self.read_text(key)
        except ObjectArchived as exc:
            if log is not None:
                log.warning("%s", exc)
            return None
        except ObjectNotReadable as exc:
            if log is not None:
                log.warning("Cannot read %s (missing, or no s3:GetObject/ListBucket permission)", exc)
            return None
        if text is None:
            return None
        try:
            return RunReport.model_validate_json(text)
        except ValueError as exc:
            if log is not None:
                log.warning("Ignoring unreadable report %s: %s", self.uri(key), exc)
            return None

    def earlier_report_for_date(self, facts: RunFacts, log: Any = None) -> RunReport | None:
        """The report an earlier run (or an earlier clear of this run) wrote for the same logical date."""
        if facts.logical_date is None:
            return None
        earlier = self.read_report(self.date_key(facts.dag_id, facts.logical_date), log=log)
        if earlier is None or (earlier.run_id == facts.run_id and earlier.clear_number >= facts.clear_number):
            return None
        return earlier

    def reports_before(self, dag_id: str, moment: datetime, *, limit: int, log: Any = None) -> list[RunReport]:
        """The newest `limit` reports for logical dates before `moment`, newest first (needs s3:ListBucket)."""
        stamps = [s for s in reversed(self._dated_stamps(dag_id)) if s < date_stamp(moment)][:limit]
        return self._read_dated(dag_id, stamps, log)

    def reports_between(self, dag_id: str, start: datetime, end: datetime, *, log: Any = None) -> list[RunReport]:
        """The reports for logical dates in [start, end), oldest first (needs s3:ListBucket)."""
        stamps = [s for s in self._dated_stamps(dag_id) if date_stamp(start) <= s < date_stamp(end)]
        return self._read_dated(dag_id, stamps, log)

    def _dated_stamps(self, dag_id: str) -> list[str]:
        if self._stamps is not None and dag_id in self._stamps:
            return self._stamps[dag_id]
        prefix = self.key(dag_id, "by-logical-date") + "/"
        stamps = sorted({key[len(prefix):].split("/", 1)[0] for key in
                         self.s3.list_keys(bucket_name=self.bucket, prefix=prefix) or []
                         if key.endswith("/report.json")})
        if self._stamps is not None:
            self._stamps[dag_id] = stamps
        return stamps

    def _read_dated(self, dag_id: str, stamps: list[str], log: Any) -> list[RunReport]:
        reports = [self.read_report(self.key(dag_id, "by-logical-date", stamp, "report.json"), log=log)
                   for stamp in stamps]
        return [r for r in reports if r is not None]

    def write(self, key: str, text: str) -> None:
        self.s3.load_string(text, key=key, bucket_name=self.bucket, replace=True)
        if self._texts is not None:
            self._texts[key] = text
