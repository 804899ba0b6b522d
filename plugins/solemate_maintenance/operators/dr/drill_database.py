"""The drill's database component: restore the replicated backups in the DR region, validate the
copy with the restore test's SQL, delete it (the restore test's operators, aimed at the DR region)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from airflow.sdk.timezone import utcnow

from solemate_maintenance.config import DrTarget
from solemate_maintenance.findings import Finding, Severity, Status
from solemate_maintenance.operators.backups.restore import RestoreCleanupOperator, RestoreRequestOperator
from solemate_maintenance.operators.backups.restore_validation import RestoreValidationOperator
from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY
from solemate_maintenance.operators.dr.drill import _DrClients, _minutes, _utc, rpo_finding
from solemate_maintenance.run_facts import format_instant as _stamp


# -- database ----------------------------------------------------------------------------------------------
def newest_dr_source(rds: Any, source: str, region: str | None) -> tuple[str, str, datetime] | None:
    """(kind, ARN or snapshot id, newest restorable point) of the best copy of `source` that the region
    of client `rds` holds: its replicated automated backups, else the newest snapshot copy."""
    # No DBInstanceIdentifier filter: AWS wants it to name an instance of this region, and in the DR
    # region only the replicated backups exist.
    backups = [b for page in rds.get_paginator("describe_db_instance_automated_backups").paginate()
               for b in page.get("DBInstanceAutomatedBackups", [])]
    replicated = [b for b in backups if b.get("DBInstanceIdentifier") == source and b.get("Region")
                  and b["Region"] != region and (b.get("RestoreWindow") or {}).get("LatestTime")]
    if replicated:
        newest = max(replicated, key=lambda b: b["RestoreWindow"]["LatestTime"])
        return ("replicated automated backup", newest["DBInstanceAutomatedBackupsArn"],
                _utc(newest["RestoreWindow"]["LatestTime"]))
    snapshots = [s for page in rds.get_paginator("describe_db_snapshots").paginate(DBInstanceIdentifier=source)
                 for s in page["DBSnapshots"] if s.get("Status") == "available" and s.get("SnapshotCreateTime")]
    if snapshots:
        newest = max(snapshots, key=lambda s: s["SnapshotCreateTime"])
        return "snapshot copy", newest["DBSnapshotIdentifier"], _utc(newest["SnapshotCreateTime"])
    return None


class DrDatabaseRestoreRequestOperator(_DrClients, RestoreRequestOperator):
    """Measure the database's RPO in the DR region and request the drill's restore there (the setup).

    The source is the newest thing the DR region holds: the replicated automated backups (point in
    time, to their latest restorable time), else the newest snapshot copy. RPO = now minus that point.
    Nothing in the DR region at all: P1, the database cannot fail over.
    """

    def __init__(self, *, target: DrTarget, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        skipped = self.not_selected(context, "database")
        if skipped is not None:
            yield skipped
            return
        source = self._dr_source()
        if source is None:
            self.push_component(context, "database", can_fail_over=False)
            yield Finding(check="dr.database.source", resource=f"{self.source_db_instance_identifier} "
                          f"({self.region_name})", status=Status.CRITICAL, severity=Severity.P1,
                          summary=f"the database cannot fail over: no replicated automated backup and no snapshot "
                                  f"copy in {self.region_name}")
            return
        kind, _, point = source
        rpo = _minutes((utcnow() - point).total_seconds())
        self.push_component(context, "database", rpo_minutes=rpo, can_fail_over=True, source=kind,
                            restorable_to=_stamp(point))
        # Judged by the validation task: a setup that fails skips its teardown, and this one has
        # created something by the time it ends.
        yield Finding(check="dr.database.source", resource=f"{self.source_db_instance_identifier} "
                      f"({self.region_name})", status=Status.OK,
                      summary=f"{kind} restorable to {_stamp(point)} ({rpo:.1f} min ago)")
        yield from super().collect_findings(context)

    def _dr_source(self) -> tuple[str, str, datetime] | None:
        return newest_dr_source(self.rds, self.source_db_instance_identifier, self.region_name)

    def _restore_point(self, context: Any) -> tuple[datetime | None, str | None, Finding | None]:
        source = self._dr_source()
        if source is None:
            return None, None, Finding(check="restore.request", resource=self.source_db_instance_identifier,
                                       status=Status.CRITICAL, severity=Severity.P1,
                                       summary=f"nothing to restore in {self.region_name}")
        kind, identifier, point = source
        return point, (identifier if kind == "snapshot copy" else None), None

    def _submit(self, target: str, point: datetime | None, snapshot: str | None, common: dict[str, Any]) -> None:
        if snapshot:
            super()._submit(target, point, snapshot, common)
            return
        source = self._dr_source()
        self.rds.restore_db_instance_to_point_in_time(SourceDBInstanceAutomatedBackupsArn=source[1] if source else "",
                                                      TargetDBInstanceIdentifier=target, RestoreTime=point, **common)


class DrDatabaseValidationOperator(_DrClients, RestoreValidationOperator):
    """Wait (deferred) for the drill's restored copy, validate it with the restore test's SQL, measure RTO."""

    headline_label = "DR drill database restore"

    def __init__(self, *, target: DrTarget, **kwargs: Any) -> None:
        super().__init__(rto_target_minutes=target.rto_minutes, rpo_target_minutes=target.rpo_minutes, **kwargs)
        self.target = target

    def collect_findings(self, context: Any) -> Iterable[Finding]:
        skipped = self.not_selected(context, "database")
        if skipped is not None:
            yield skipped
            return
        yield from self._rpo(context)
        yield from super().collect_findings(context)

    def _rpo(self, context: Any) -> Iterable[Finding]:
        measured = context["ti"].xcom_pull(task_ids=self.request_task_id, key=MEASUREMENTS_XCOM_KEY) or {}
        if measured.get("rpo_minutes") is not None:
            yield rpo_finding(self.target, "dr.database.rpo", f"{self.source_db_instance_identifier} "
                              f"({self.region_name})", measured["rpo_minutes"],
                              f"{measured.get('source')} restorable to {measured.get('restorable_to')}")


class DrDatabaseCleanupOperator(_DrClients, RestoreCleanupOperator):
    """Delete the drill's restored copy (the teardown), with the restore test's guard."""
