"""Airflow's own upkeep: the metadata database trimmed with `airflow db clean`, and the task logs.

Airflow's documentation recommends `airflow db clean` for the metadata database (a 15-minute watch
alone writes 35,000 runs a year) and removing old task logs. Both are dry runs unless
``airflow_housekeeping.clean`` is true: the report shows what would go either way.

Airflow 3 keeps tasks away from the metadata database (a task's own settings point nowhere), so the
CLI runs in a process of its own with the URL from the ``metadata_conn_id`` connection.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from solemate_maintenance.config import CLEANABLE_TABLES, AirflowHousekeeping
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY, MaintenanceCheckOperator
from solemate_maintenance.redaction import scrub, trim
from solemate_maintenance.window import report_date, run_end

ARCHIVE_TABLE_PREFIX = "_airflow_deleted__"
# Where the exported rows go in the reports bucket (under reports.prefix), with a lifecycle of their own.
ARCHIVE_PREFIX = "airflow-archive"
CLI_TIMEOUT_SECONDS = 15 * 60

# Rows per table, and Airflow's archive tables, through SQLAlchemy in the child process.
_COUNT_ROWS = """
import json, sys
from sqlalchemy import create_engine, inspect, text
import os
engine = create_engine(os.environ["SOLEMATE_METADATA_URL"])
names = set(inspect(engine).get_table_names())
with engine.connect() as conn:
    counts = {t: conn.execute(text(f'SELECT COUNT(*) FROM "{t}"')).scalar() for t in json.loads(sys.argv[1])
              if t in names}
print(json.dumps({"counts": counts, "archives": sorted(n for n in names if n.startswith(sys.argv[2]))}))
"""


class MetadataCleanupError(Exception):
    """`airflow db clean` (or a companion command) failed; its output's end is in the message."""


def metadata_url(conn_id: str) -> str:
    """The metadata database's SQLAlchemy URL from the connection: its extra ``sql_alchemy_conn``, else its
    URI (``postgres://`` spelt as SQLAlchemy wants it)."""
    from airflow.sdk import BaseHook

    from solemate_maintenance.notifiers.delivery import register_connection_secrets

    conn = BaseHook.get_connection(conn_id)
    register_connection_secrets(conn_id)
    extra = conn.extra_dejson if isinstance(conn.extra_dejson, dict) else {}
    url = re.sub(r"^postgres://", "postgresql://", extra.get("sql_alchemy_conn") or conn.get_uri())
    from urllib.parse import urlsplit

    from solemate_maintenance.notifiers.delivery import register_secrets

    register_secrets(url, urlsplit(url).password)  # neither the URL nor its password in any log
    return url


def _parse_counts(output: str) -> dict[str, int]:
    """`airflow db clean` prints, per table: "Checking table <t>" then "Found <n> rows meeting deletion criteria"."""
    found: dict[str, int] = {}
    table = None
    for line in output.splitlines():
        if match := re.search(r"Checking table (\S+)", line):
            table = match.group(1)
        elif table and (match := re.search(r"Found (\d+) rows meeting deletion criteria", line)):
            found[table] = int(match.group(1))
            table = None
    return found


class MetadataCleanupOperator(MaintenanceCheckOperator):
    """Trim the metadata database with `airflow db clean`, per table at its retention.

    Always a dry run first (rows older than each table's retention before the run's date: the report's
    table); with ``clean`` the same commands delete them, then the deleted rows are exported as CSV to the
    reports bucket and Airflow's archive tables dropped (``archive: export``), kept, or never made
    (``archive: drop``). Row counts before and after are in the report.

    :param settings: the ``airflow_housekeeping`` section.
    :param bucket: reports bucket; :param reports_prefix: the reports' key prefix.
    """

    template_fields = (*MaintenanceCheckOperator.template_fields, "bucket")

    def __init__(self, *, settings: AirflowHousekeeping, bucket: str, reports_prefix: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.bucket = bucket
        self.reports_prefix = reports_prefix

    def _cli(self, url: str, *args: str) -> str:
        env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True,
                                timeout=CLI_TIMEOUT_SECONDS, check=False)
        output = result.stdout + result.stderr
        self.log.info("airflow %s: exit %s in %.1f s", " ".join(a for a in args if "://" not in a),
                      result.returncode, time.monotonic() - started)
        if result.returncode != 0:
            raise MetadataCleanupError(f"airflow {args[0]} {args[1]} failed (exit {result.returncode}): "
                                       f"{trim(scrub(output[-600:]), 600)}")
        return output

    def _rows(self, url: str) -> tuple[dict[str, int], list[str]]:
        # The URL (a password in it) goes in the environment, never on a command line others can list.
        result = subprocess.run([sys.executable, "-c", _COUNT_ROWS, json.dumps(CLEANABLE_TABLES), ARCHIVE_TABLE_PREFIX],
                                env={**os.environ, "SOLEMATE_METADATA_URL": url}, capture_output=True, text=True,
                                timeout=300, check=False)
        if result.returncode != 0:
            raise MetadataCleanupError(f"counting the metadata rows failed: {trim(scrub(result.stderr[-600:]), 600)}")
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        return answer["counts"], answer["archives"]

    def _by_retention(self) -> dict[int, list[str]]:
        groups: dict[int, list[str]] = defaultdict(list)
        for table in CLEANABLE_TABLES:
            groups[self.settings.retention_of(table)].append(table)
        return dict(sorted(groups.items()))

    def _conflicts(self, days: int, tables: list[str]) -> list[str]:
        """Tables `airflow db clean` would clean along with `tables` (their dependants) at `days`, although
        their own retention is longer: cleaning the group would delete them early."""
        from airflow.utils.db_cleanup import _effective_table_names

        effective, _ = _effective_table_names(table_names=tables)
        return [t for t in effective if t not in tables and self.settings.retention_of(t) > days]

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        settings = self.settings
        url = metadata_url(settings.metadata_conn_id)
        end = run_end(context)
        before, _ = self._rows(url)
        eligible: dict[str, int] = {}
        cutoffs: dict[str, str] = {}
        cleaned: set[str] = set()
        blocked: list[Finding] = []
        for days, tables in self._by_retention().items():
            cutoff = (end - timedelta(days=days)).isoformat()
            present = [t for t in tables if t in before]
            if not present:
                continue
            if conflicts := self._conflicts(days, present):
                blocked.append(Finding(
                    check="airflow.metadata_retention", resource=", ".join(present), status=Status.WARNING,
                    severity=Severity.P3,
                    summary=(f"not cleaned: at {days} days airflow db clean also deletes the rows of "
                             f"{', '.join(f'{t} ({settings.retention_of(t)} days)' for t in conflicts)}, which "
                             "depend on them, before their own retention"),
                    details={"fix": f"give {', '.join(conflicts)} at most {days} days in "
                                    "airflow_housekeeping.retention_days, or these tables as long"}))
                continue
            base = ["db", "clean", "--clean-before-timestamp", cutoff, "--tables", ",".join(present),
                    "--batch-size", str(settings.batch_size), "--error-on-cleanup-failure", "-y"]
            for table, count in _parse_counts(self._cli(url, *base, "--dry-run")).items():
                # A dependant cleaned with a longer-kept group is counted there too: the larger count holds.
                eligible[table] = max(count, eligible.get(table, 0))
            cutoffs.update(dict.fromkeys(present, cutoff[:10]))
            if settings.clean:
                self._cli(url, *base, *(["--skip-archive"] if settings.archive == "drop" else []))
                cleaned.update(present)
        exported: list[str] = []
        if settings.clean and settings.archive == "export" and cleaned:
            # Never Airflow's own migration table _xcom_archive: drop-archived would drop it whole.
            exported = self._export_archives(url, context, sorted(cleaned - {"_xcom_archive"}))
        yield from blocked
        after, archives = self._rows(url)
        total = sum(eligible.values())
        rows = [[table, settings.retention_of(table), cutoffs.get(table, "—"), before.get(table, 0),
                 eligible.get(table, 0), after.get(table, 0)] for table in CLEANABLE_TABLES if table in before]
        verb = "deleted" if settings.clean else "would delete"
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": (f"Airflow metadata: {total} row(s) past their retention, {verb}; "
                         f"{sum(before.values())} rows before, {sum(after.values())} after"),
            "mode": "clean" if settings.clean else "dry run (airflow_housekeeping.clean is false)",
            "rows_before": sum(before.values()), "rows_after": sum(after.values()), "rows_past_retention": total,
            "archive_tables_left": archives, "exported": exported,
            "tables": {"Metadata tables": {
                "columns": ["table", "retention (days)", "before", "rows before", f"past retention ({verb})",
                            "rows after"], "rows": rows}}})
        if settings.clean:
            yield Finding(check="airflow.metadata_cleanup", resource="metadata database", status=Status.OK,
                          summary=f"deleted {total} row(s) past their retention; {sum(after.values())} rows left"
                                  + (f"; {len(exported)} archive table(s) exported and dropped" if exported else ""))
        elif total:
            yield Finding(check="airflow.metadata_cleanup", resource="metadata database", status=Status.WARNING,
                          severity=Severity.P4,
                          summary=f"dry run: {total} row(s) past their retention would be deleted "
                                  f"({', '.join(f'{t}: {n}' for t, n in eligible.items() if n)})",
                          details={"fix": "set airflow_housekeeping.clean: true to delete them"})
        else:
            yield Finding(check="airflow.metadata_cleanup", resource="metadata database", status=Status.OK,
                          summary="dry run: no row past its retention")
        if archives and settings.archive != "keep":
            yield Finding(check="airflow.metadata_archives", resource="metadata database", status=Status.WARNING,
                          severity=Severity.P4, summary=f"{len(archives)} archive table(s) of earlier cleanups left: "
                                                        f"{', '.join(archives[:3])}",
                          details={"fix": "airflow db export-archived, then airflow db drop-archived"})

    def _export_archives(self, url: str, context: Any, tables: list[str]) -> list[str]:
        """Export the archive tables of `tables` as CSV to the reports bucket's ``airflow-archive/`` (its own
        lifecycle: the rows may hold run configurations), then drop them, only once exported."""
        store = self.report_store(self.bucket, self.reports_prefix)
        stamp = report_date(context).strftime("%Y-%m-%dT%H%MZ")
        with tempfile.TemporaryDirectory(prefix="airflow-archive-") as folder:
            self._cli(url, "db", "export-archived", "--export-format", "csv", "--output-path", folder,
                      "--tables", ",".join(tables), "-y")
            files = sorted(Path(folder).glob("*.csv"))
            for path in files:
                key = store.key(ARCHIVE_PREFIX, stamp, path.name)
                store.s3.load_file(str(path), key=key, bucket_name=self.bucket, replace=True)
            if files:
                self._cli(url, "db", "drop-archived", "--tables", ",".join(tables), "-y")
        return [path.stem for path in files]


class TaskLogRetentionOperator(MaintenanceCheckOperator):
    """Remove task log files older than ``task_log_retention_days`` under ``[logging] base_log_folder``
    (a dry run unless ``clean``), and the folders left empty.

    :param settings: the ``airflow_housekeeping`` section.
    :param log_folder: where the logs are (default: Airflow's ``base_log_folder``).
    """

    def __init__(self, *, settings: AirflowHousekeeping, log_folder: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.log_folder = log_folder

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        from airflow.configuration import conf

        folder = Path(self.log_folder or conf.get("logging", "base_log_folder"))
        cutoff = run_end(context) - timedelta(days=self.settings.task_log_retention_days)
        if not folder.is_dir():
            yield Finding(check="airflow.task_logs", resource=str(folder), status=Status.SKIPPED,
                          summary="no local task log folder (remote logging keeps them: give that bucket a lifecycle)")
            return
        old, kept_bytes, old_bytes = [], 0, 0
        for path in folder.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            stat = path.stat()
            if stat.st_mtime < cutoff.timestamp():
                old.append(path)
                old_bytes += stat.st_size
            else:
                kept_bytes += stat.st_size
        if self.settings.clean:
            for path in old:
                path.unlink(missing_ok=True)
            for directory in sorted((d for d in folder.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
                if not any(directory.iterdir()):
                    directory.rmdir()
        verb = "removed" if self.settings.clean else "would remove"
        context["ti"].xcom_push(key=MEASUREMENTS_XCOM_KEY, value={
            "headline": f"Task logs: {len(old)} file(s) older than {self.settings.task_log_retention_days} days, "
                        f"{verb} ({old_bytes / 1e6:.1f} MB); {kept_bytes / 1e6:.1f} MB kept",
            "files_past_retention": len(old), "mb_past_retention": round(old_bytes / 1e6, 2),
            "mb_kept": round(kept_bytes / 1e6, 2), "folder": str(folder)})
        if old and not self.settings.clean:
            yield Finding(check="airflow.task_logs", resource=str(folder), status=Status.WARNING, severity=Severity.P4,
                          summary=f"dry run: {len(old)} log file(s) ({old_bytes / 1e6:.1f} MB) older than "
                                  f"{self.settings.task_log_retention_days} days would be removed",
                          details={"fix": "set airflow_housekeeping.clean: true to remove them"})
        else:
            yield Finding(check="airflow.task_logs", resource=str(folder), status=Status.OK,
                          summary=f"{verb} {len(old)} log file(s) older than {self.settings.task_log_retention_days} "
                                  f"days ({old_bytes / 1e6:.1f} MB); {kept_bytes / 1e6:.1f} MB kept")
