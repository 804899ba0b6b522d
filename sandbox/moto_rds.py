"""RDS restores as AWS performs them, for the restore test.

moto 5.2.5 restores instantly, keeps no data, ignores the restore time (a point-in-time restore to
years before the instance existed succeeds) and returns ``RestoreWindow: None`` for automated
backups. The sandbox needs the real contract:

* a restored instance is ``creating`` for ``restore_seconds``, a deleted one ``deleting`` for
  ``delete_seconds`` before it disappears;
* ``LatestRestorableTime`` trails the present by ``restorable_lag_seconds`` and automated backups
  carry a ``RestoreWindow``; a ``RestoreTime`` outside it is refused as AWS refuses it;
* a restored instance's endpoint is a real PostgreSQL database holding the source's data as of the
  restore point (``restore_point`` is sent to a :class:`RestoredData` such as the embedded server);
* a source (instance or snapshot) can be marked corrupt, a restore request can be refused, an
  instance can be made to never become available, and restores can be held ``creating`` until a
  test releases them (what it wants to do during the wait no longer races a timer);
* automated backups can be replicated to another region (moto has no cross-region replication):
  :func:`replicate_automated_backups` lists them in the DR region with a window that trails the
  source's by ``lag``, and a point-in-time restore from their ARN creates the instance there.

The behaviour is module state (moto runs in this process), set by the sandbox and the tests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from moto.rds.exceptions import RDSClientError
from moto.rds.models import DBInstance, DBInstanceAutomatedBackup, RDSBackend

_ORIGINAL: dict[str, Any] = {}
_LOCK = threading.RLock()


class RestoredData(Protocol):
    """Where a restored instance's data lives: a database loaded with the source's rows as of a time."""

    def create_restored(self, name: str, as_of: datetime, corrupt: bool) -> dict[str, Any]:
        """Create database `name`; return its endpoint: {"address", "port", "db_name"}."""

    def drop_restored(self, name: str) -> None: ...


@dataclass
class RestoreBehaviour:
    restore_seconds: float = 3.0
    delete_seconds: float = 1.0
    restorable_lag_seconds: float = 120.0
    # The next restore request fails with this AWS error code (e.g. InsufficientDBInstanceCapacity).
    refuse_next_restore: str | None = None
    never_available: bool = False
    # While set, restored instances stay "creating" however long they took; clear it to let them finish.
    held: bool = False
    # Instance or snapshot identifiers whose restores come back with damaged data.
    corrupt_sources: set[str] = field(default_factory=set)
    data: RestoredData | None = None
    # Every accepted restore request, in order: what the tests count.
    requests: list[dict[str, Any]] = field(default_factory=list)

    def reset(self) -> None:
        data = self.data
        self.__init__()  # type: ignore[misc]
        self.data = data


BEHAVIOUR = RestoreBehaviour()


class ReplicatedAutomatedBackup:
    """An automated backup replicated into this region; attribute names follow the API's shape."""

    status = "replicating"
    engine = "postgres"
    encrypted = True

    def __init__(self, backend: RDSBackend, source: DBInstance, lag: timedelta) -> None:
        self.backend = backend
        self.source = source
        self.lag = lag
        self.db_instance_identifier = source.db_instance_identifier
        self.region = source.region
        self.dbi_resource_id = source.dbi_resource_id
        self.db_instance_arn = source.db_instance_arn
        self.db_instance_automated_backups_arn = (
            f"arn:aws:rds:{backend.region_name}:{backend.account_id}:auto-backup:ab-"
            f"{source.dbi_resource_id.lower().removeprefix('db-')}")
        self.backup_retention_period = source.backup_retention_period

    @property
    def restore_window(self) -> dict[str, datetime]:
        earliest, latest = restore_window(self.source)
        return {"EarliestTime": earliest, "LatestTime": max(earliest, latest - self.lag)}


def replicate_automated_backups(source: DBInstance, dr: RDSBackend, lag: timedelta | None) -> None:
    """Replicate `source`'s automated backups into backend `dr` (lag behind the source's window), or stop (None)."""
    replicated = dr.__dict__.setdefault("_sandbox_replicated", {})
    replicated.clear()
    if lag is not None:
        entry = ReplicatedAutomatedBackup(dr, source, lag)
        replicated[entry.db_instance_automated_backups_arn] = entry


def describe_db_instance_automated_backups(self: RDSBackend, db_instance_identifier: str | None = None,
                                           **kwargs: Any) -> list[Any]:
    found = _ORIGINAL["describe_db_instance_automated_backups"](self, db_instance_identifier, **kwargs)
    resource_id = kwargs.get("dbi_resource_id")
    arn = kwargs.get("db_instance_automated_backups_arn")
    if resource_id or arn:
        found = [b for b in found if resource_id and getattr(b.backend.databases.get(b.db_instance_identifier),
                                                              "dbi_resource_id", None) == resource_id]
    for entry in self.__dict__.get("_sandbox_replicated", {}).values():
        if (db_instance_identifier in (None, entry.db_instance_identifier)
                and resource_id in (None, entry.dbi_resource_id)
                and arn in (None, entry.db_instance_automated_backups_arn)):
            found.append(entry)
    return found


def _restore_from_replicated(backend: RDSBackend, arn: str, target: str, overrides: dict[str, Any],
                             as_of: datetime | None, use_latest: bool) -> DBInstance:
    import copy

    entry = backend.__dict__.get("_sandbox_replicated", {}).get(arn)
    if entry is None:
        raise RDSClientError("DBInstanceAutomatedBackupNotFound", f"No automated backup {arn} in {backend.region_name}")
    window = entry.restore_window
    point = window["LatestTime"] if use_latest else _utc(as_of)
    if not window["EarliestTime"] <= point <= window["LatestTime"]:
        raise RDSClientError("InvalidRestoreFault",
                             f"Restore time {point:%Y-%m-%dT%H:%M:%SZ} is outside the replicated backup's window")
    if target in backend.databases:
        raise RDSClientError("DBInstanceAlreadyExists", "DB instance already exists")
    _refuse_if_asked()
    props = {}
    for key, value in entry.source.__dict__.items():
        key = key.removeprefix("_")
        if key in ("backend", "db_subnet_group", "max_allocated_storage", "region", "option_group_name") \
                or key.startswith("sandbox"):
            continue
        props[key] = copy.deepcopy(value)
    props.update({k: v for k, v in overrides.items() if v})
    props["db_instance_identifier"] = target
    with _LOCK:
        instance = backend.create_db_instance(props)
        return _finish_restore(instance, entry.db_instance_identifier, point, "point_in_time")


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def restore_window(instance: DBInstance) -> tuple[datetime, datetime]:
    """(earliest, latest) restorable time of an instance, as AWS computes it."""
    latest = _now() - timedelta(seconds=BEHAVIOUR.restorable_lag_seconds)
    retention = timedelta(days=int(instance.backup_retention_period or 0))
    earliest = max(_utc(instance.created), _now() - retention)
    return earliest, max(earliest, latest)


def _latest_restorable_time(self: DBInstance) -> datetime:
    return restore_window(self)[1]


def _address(self: DBInstance) -> str:
    endpoint = getattr(self, "_sandbox_endpoint", None)
    if endpoint:
        return endpoint["address"]
    return f"{self.db_instance_identifier}.aaaaaaaaaa.{self.region}.rds.amazonaws.com"


def _automated_backup_window(self: DBInstanceAutomatedBackup) -> dict[str, datetime] | None:
    instance = self.backend.databases.get(self.db_instance_identifier)
    if instance is None:
        return None
    earliest, latest = restore_window(instance)
    return {"EarliestTime": earliest, "LatestTime": latest}


def _automated_backup_retention(self: DBInstanceAutomatedBackup) -> int | None:
    instance = self.backend.databases.get(self.db_instance_identifier)
    return None if instance is None else instance.backup_retention_period


def _advance(backend: RDSBackend) -> None:
    """Move instances through creating -> available and deleting -> gone as time passes."""
    now = _now()
    with _LOCK:
        for identifier, instance in list(backend.databases.items()):
            ready_at = getattr(instance, "_sandbox_ready_at", None)
            if instance.status == "creating" and ready_at is not None and now >= ready_at and not BEHAVIOUR.held:
                instance.status = "available"
            gone_at = getattr(instance, "_sandbox_gone_at", None)
            if instance.status == "deleting" and gone_at is not None and now >= gone_at:
                backend.databases.pop(identifier, None)
                if getattr(instance, "_sandbox_endpoint", None) and BEHAVIOUR.data is not None:
                    BEHAVIOUR.data.drop_restored(instance._sandbox_endpoint["db_name"])


def describe_db_instances(self: RDSBackend, *args: Any, **kwargs: Any) -> Any:
    _advance(self)
    return _ORIGINAL["describe_db_instances"](self, *args, **kwargs)


def _refuse_if_asked() -> None:
    code = BEHAVIOUR.refuse_next_restore
    if code:
        BEHAVIOUR.refuse_next_restore = None
        raise RDSClientError(code, f"Cannot restore: {code} (sandbox fault)")


def _finish_restore(instance: DBInstance, source_id: str, as_of: datetime, restore_type: str) -> DBInstance:
    corrupt = source_id in BEHAVIOUR.corrupt_sources
    instance.status = "creating"
    instance._sandbox_ready_at = (datetime.max.replace(tzinfo=UTC) if BEHAVIOUR.never_available
                                  else _now() + timedelta(seconds=BEHAVIOUR.restore_seconds))
    if BEHAVIOUR.data is not None:
        name = "restored_" + instance.db_instance_identifier.replace("-", "_")
        instance._sandbox_endpoint = BEHAVIOUR.data.create_restored(name, as_of, corrupt)
        instance.db_name = instance._sandbox_endpoint["db_name"]
        instance.port = instance._sandbox_endpoint["port"]
    BEHAVIOUR.requests.append({"instance": instance.db_instance_identifier, "source": source_id,
                               "restore_type": restore_type, "as_of": as_of, "corrupt": corrupt})
    return instance


def restore_db_instance_to_point_in_time(self: RDSBackend, source_db_identifier: str, target_db_identifier: str,
                                         overrides: dict[str, Any]) -> DBInstance:
    replicated_arn = overrides.get("source_db_instance_automated_backups_arn")
    if not source_db_identifier and replicated_arn:
        rest = {k: v for k, v in overrides.items() if k not in (
            "source_db_instance_automated_backups_arn", "restore_time", "use_latest_restorable_time",
            "target_db_instance_identifier")}
        return _restore_from_replicated(self, replicated_arn, target_db_identifier, rest,
                                        overrides.get("restore_time"),
                                        bool(overrides.get("use_latest_restorable_time")))
    source = self.describe_db_instances(db_instance_identifier=source_db_identifier)[0]
    if not source.backup_retention_period:
        raise RDSClientError("PointInTimeRestoreNotEnabled",
                             f"Point-in-time restore is not enabled for {source_db_identifier}")
    overrides = dict(overrides)
    restore_time = overrides.pop("restore_time", None)
    use_latest = overrides.pop("use_latest_restorable_time", None)
    earliest, latest = restore_window(source)
    if restore_time is not None and use_latest:
        raise RDSClientError("InvalidParameterCombination",
                             "Cannot specify both RestoreTime and UseLatestRestorableTime")
    if restore_time is None and not use_latest:
        raise RDSClientError("InvalidParameterCombination", "Either RestoreTime or UseLatestRestorableTime is required")
    as_of = latest if use_latest else _utc(restore_time)
    if not earliest <= as_of <= latest:
        raise RDSClientError("InvalidRestoreFault",
                             f"Restore time {as_of:%Y-%m-%dT%H:%M:%SZ} is outside the restore window of "
                             f"{source_db_identifier}: {earliest:%Y-%m-%dT%H:%M:%SZ} to {latest:%Y-%m-%dT%H:%M:%SZ}")
    if target_db_identifier in self.databases:
        raise RDSClientError("DBInstanceAlreadyExists", "DB instance already exists")
    _refuse_if_asked()
    with _LOCK:
        instance = _ORIGINAL["restore_db_instance_to_point_in_time"](self, source_db_identifier,
                                                                     target_db_identifier, overrides)
        return _finish_restore(instance, source_db_identifier, as_of, "point_in_time")


def restore_db_instance_from_db_snapshot(self: RDSBackend, from_snapshot_id: str, overrides: dict[str, Any]
                                         ) -> DBInstance:
    snapshot_id = from_snapshot_id.rsplit(":", 1)[-1] if from_snapshot_id.startswith("arn:") else from_snapshot_id
    snapshot = self.describe_db_snapshots(db_instance_identifier=None, db_snapshot_identifier=from_snapshot_id)[0]
    if overrides.get("db_instance_identifier") in self.databases:
        raise RDSClientError("DBInstanceAlreadyExists", "DB instance already exists")
    _refuse_if_asked()
    with _LOCK:
        instance = _ORIGINAL["restore_db_instance_from_db_snapshot"](self, from_snapshot_id, overrides)
        return _finish_restore(instance, snapshot_id, _utc(snapshot.created), "snapshot")


def delete_db_instance(self: RDSBackend, db_instance_identifier: str, *args: Any, **kwargs: Any) -> DBInstance:
    _advance(self)
    existing = self.databases.get(db_instance_identifier)
    if existing is not None and existing.status == "deleting":
        raise RDSClientError("InvalidDBInstanceState", f"Instance {db_instance_identifier} is already being deleted.")
    with _LOCK:
        instance = _ORIGINAL["delete_db_instance"](self, db_instance_identifier, *args, **kwargs)
        # AWS keeps the instance, 'deleting', for a while; the waiters must see that.
        instance._sandbox_gone_at = _now() + timedelta(seconds=BEHAVIOUR.delete_seconds)
        self.databases[db_instance_identifier] = instance
        return instance


def apply() -> None:
    """Install the RDS patches (idempotent)."""
    if _ORIGINAL:
        return
    for name in ("describe_db_instances", "restore_db_instance_to_point_in_time",
                 "describe_db_instance_automated_backups",
                 "restore_db_instance_from_db_snapshot", "delete_db_instance"):
        _ORIGINAL[name] = getattr(RDSBackend, name)
    RDSBackend.describe_db_instances = describe_db_instances  # type: ignore[method-assign]
    RDSBackend.restore_db_instance_to_point_in_time = restore_db_instance_to_point_in_time  # type: ignore[method-assign]
    RDSBackend.restore_db_instance_from_db_snapshot = restore_db_instance_from_db_snapshot  # type: ignore[method-assign]
    RDSBackend.delete_db_instance = delete_db_instance  # type: ignore[method-assign]
    RDSBackend.describe_db_instance_automated_backups = describe_db_instance_automated_backups  # type: ignore[method-assign]
    DBInstance.latest_restorable_time = property(_latest_restorable_time)  # type: ignore[assignment]
    DBInstance.address = property(_address)  # type: ignore[assignment]
    DBInstanceAutomatedBackup.restore_window = property(_automated_backup_window)  # type: ignore[attr-defined]
    DBInstanceAutomatedBackup.backup_retention_period = property(_automated_backup_retention)  # type: ignore[attr-defined]
