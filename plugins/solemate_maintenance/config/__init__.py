"""The platform configuration: a typed schema and its loader.

The DAG files load the config at parse time so that a broken file becomes one clear import error
in the Airflow UI (file, key path, reason), instead of a task failing at 2 a.m. Nothing is coerced:
`yes` is not a number, `.nan` is not a threshold, a key written twice is an error, not "last wins".
"""

from __future__ import annotations

import os
import re
import unicodedata
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from solemate_maintenance.config.base import (
    BucketName,
    Lower,
    LowerPercent,
    Minutes,
    Percent,
    PositiveSeconds,
    SeverityName,
    Upper,
    UpperPercent,
    known_regions,
)
from solemate_maintenance.config.checks import (
    ApplicationCheck,
    BusinessCheck,
    CapacityCheck,
    CertificateCheck,
    Checks,
    DatabaseMaintenanceCheck,
    EcsCheck,
    ElastiCacheCheck,
    KpiCheck,
    MetricWindowConfig,
    OpenIngressAllowance,
    Prices,
    RdsCheck,
    SecurityCheck,
    TlsEndpoint,
    UnusedResourcesCheck,
    VulnerabilityCheck,
)
from solemate_maintenance.config.housekeeping import CLEANABLE_TABLES, AirflowHousekeeping
from solemate_maintenance.config.logs import (
    LOG_RETENTION_DAYS,
    ArchiveClass,
    ConfigBackup,
    FirehoseStream,
    LogArchive,
    LogClass,
    LogLifecycle,
    LogTransition,
    ReportsLifecycle,
    StorageClass,
)
from solemate_maintenance.config.monitoring import (
    AlarmMetric,
    AlarmPolicy,
    ErrorSummary,
    LogPipeline,
    Monitoring,
    NotificationTopic,
    OverviewDashboard,
    PendingUpdates,
    ScalingPolicy,
    StackDrift,
)
from solemate_maintenance.config.platform import (
    DEFAULT_SEVERITIES,
    AlbResources,
    Alerts,
    Cost,
    EcsResources,
    EcsService,
    ElastiCacheResources,
    Kpis,
    LogResources,
    MaintenanceStatus,
    MonthlySummary,
    PlatformConfig,
    RdsResources,
    Regions,
    Reports,
    Resources,
    RightSizing,
    SeverityPolicy,
    Workers,
)
from solemate_maintenance.config.recovery import (
    DEFAULT_BACKUP_RULES,
    DEFAULT_DR_TARGETS,
    DR_COMPONENTS,
    AssetReplication,
    BackupRule,
    Backups,
    DisasterRecovery,
    DrComponentName,
    DrDrill,
    DrTarget,
    RestoreTest,
)
from solemate_maintenance.config.reviews import Reviews
from solemate_maintenance.config.watch import DatabaseWatch, PerformanceWatch, Watch

CONFIG_ENV_VAR = "MAINTENANCE_CONFIG"
# A platform description is a few kilobytes; anything near this is a mistake (and would stall the
# DAG processor past its import timeout before any error could be shown).
MAX_CONFIG_BYTES = 1024 * 1024
MAX_NESTING = 20
# Values after expanding YAML aliases: a 300-byte "alias bomb" can otherwise expand to millions.
MAX_VALUES = 100_000
MAX_ERRORS_SHOWN = 5
MAX_MESSAGE_CHARS = 2000
# The repository (or the image's /opt/airflow): include/ with the config, SQL and templates sits under it.
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG_PATH = REPO_ROOT / "include" / "config" / "platform.yaml"


class ConfigError(Exception):
    """The platform config cannot be used. The message names the file, the key path and the reason."""


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def _shown(key: Any) -> str:
    """A key as text; invisible or look-alike characters escaped so that two keys never print alike."""
    text = str(key)
    if all(ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Zs") or ch == " " for ch in text) \
            and text.isascii():
        return text
    return ascii(text)


def _key_path(location: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in location:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + _shown(part))
    return "".join(parts) or "(top level)"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(error: ValidationError) -> str:
    reasons = []
    items = error.errors(include_url=False)
    for item in items[:MAX_ERRORS_SHOWN]:
        loc = tuple(item["loc"])
        reason = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            reason = "unknown key (misspelt?)"
        elif item["type"] == "missing":
            reason = "required key is missing"
        elif (
            "input" in item
            and not isinstance(item["input"], dict | list)
            and _short(item["input"]) not in reason
        ):
            reason = f"{reason} (got {_short(item['input'])})"
        named = re.match(r"^([A-Za-z_][\w.\[\]-]*): ", reason) if not loc else None
        if named:  # a cross-field rule of the whole file: its message starts with the key to change
            loc, reason = (named.group(1),), reason[named.end():]
        reasons.append(f"{_key_path(loc)}: {reason}")
    if len(items) > MAX_ERRORS_SHOWN:
        reasons.append(f"… and {len(items) - MAX_ERRORS_SHOWN} more errors")
    return "; ".join(reasons)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and names the key path of any value it cannot build."""

    values = 0
    building: set[int]


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, path: tuple = ()) -> dict:
    # Keys written in this mapping must be unique; keys brought in by a `<<:` merge may be overridden.
    explicit = {id(key_node) for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge"}
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    seen: set[Any] = set()
    for key_node, value_node in node.value:
        key = _construct(loader, key_node, path)
        if isinstance(key, list | dict):
            raise _YamlProblem(path, "a key must be a plain value", key_node)
        if id(key_node) in explicit:
            if key in seen:
                raise _YamlProblem((*path, key), f"duplicate key (also at line {_first_line(node, key, loader)}); "
                                   "remove one: YAML would silently keep the last", key_node)
            seen.add(key)
        result[key] = _construct(loader, value_node, (*path, key))
    return result


def _first_line(node: yaml.MappingNode, key: Any, loader: _StrictLoader) -> int:
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and loader.construct_object(key_node) == key:
            return key_node.start_mark.line + 1
    return 0


def _construct(loader: _StrictLoader, node: yaml.Node, path: tuple) -> Any:
    loader.values += 1
    if loader.values > MAX_VALUES:
        raise _YamlProblem(path, f"more than {MAX_VALUES:,} values (aliases expanding without end?)", node)
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        if node.tag not in ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
            # !!set, !!omap, !!pairs or a custom tag would silently turn into a plain mapping or list.
            raise _YamlProblem(path, f"unsupported tag {node.tag.replace('tag:yaml.org,2002:', '!!')}", node)
        if id(node) in loader.building:
            raise _YamlProblem(path, "recursive alias: a value that contains itself", node)
        loader.building.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return _construct_mapping(loader, node, path)
            return [_construct(loader, item, (*path, index)) for index, item in enumerate(node.value)]
        finally:
            loader.building.discard(id(node))
    try:
        return loader.construct_object(node, deep=True)
    except Exception as exc:  # any tag's constructor: "!!bool maybe", "!!int ''", a 5000-digit number
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "digits" in reason:
            reason = "number too large"
        elif not isinstance(exc, ValueError | OverflowError | yaml.YAMLError):
            reason = f"{node.tag.rsplit(':', 1)[-1]} value {node.value!r} is not valid"
        raise _YamlProblem(path, f"cannot read value: {reason}", node) from None


class _YamlProblem(Exception):
    def __init__(self, path: tuple, reason: str, node: yaml.Node) -> None:
        super().__init__(reason)
        self.path, self.reason, self.node = path, reason, node


def _max_nesting(text: str) -> tuple[int, int]:
    """Deepest nesting of collections and the line it reaches; the token scan does not recurse."""
    depth = deepest = line = 0
    openers = (yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken, yaml.BlockMappingStartToken,
               yaml.BlockSequenceStartToken)
    closers = (yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken, yaml.BlockEndToken)
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, openers):
            depth += 1
            if depth > deepest:
                deepest, line = depth, token.start_mark.line + 1
                if deepest > MAX_NESTING:
                    break
        elif isinstance(token, closers):
            depth -= 1
    return deepest, line


def _load_yaml(text: str, source: str) -> Any:
    try:
        depth, line = _max_nesting(text)
        if depth > MAX_NESTING:
            raise ConfigError(f"{source}: (YAML structure) line {line}: nested more than {MAX_NESTING} levels deep")
        loader = _StrictLoader(text)
        loader.building = set()
        try:
            node = loader.get_single_node()
            return None if node is None else _construct(loader, node, ())
        finally:
            loader.dispose()
    except _YamlProblem as problem:
        mark = problem.node.start_mark
        raise ConfigError(f"{source}: {_key_path(problem.path)}: {problem.reason} "
                          f"(line {mark.line + 1}, column {mark.column + 1})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: (YAML syntax) {where}{problem}") from None


def _one_line(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 1] + "…"


def parse_config(text: str, source: str) -> PlatformConfig:
    """Validate config text. Raises ConfigError with `source: key.path: reason` on one line."""
    try:
        raw = _load_yaml(text, source)
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: (top level): expected a mapping of keys, got {type(raw).__name__}")
        try:
            return PlatformConfig.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{source}: {_describe(exc)}") from None
    except ConfigError as exc:
        raise ConfigError(_one_line(str(exc))) from None


def load_config(path: Path | str | None = None) -> PlatformConfig:
    """Read and validate the platform config (MAINTENANCE_CONFIG, else the shipped file)."""
    resolved = Path(path) if path else config_path()
    return _load_cached(resolved.resolve(), *_stamp(resolved))


def _stamp(path: Path) -> tuple[float, int]:
    try:
        stat = path.stat()
    except OSError:
        return -1.0, -1
    return stat.st_mtime, stat.st_size


@cache
def _load_cached(path: Path, _mtime_key: float, size: int) -> PlatformConfig:
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: (file) is {size:,} bytes; a platform config is at most "
                          f"{MAX_CONFIG_BYTES:,} bytes (wrong file?)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: (file) cannot be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{path}: (file encoding) line {line}, column {column}: byte 0x{data[exc.start]:02x} "
                          "is not UTF-8; save the file as UTF-8") from None
    return parse_config(text, str(path))

__all__ = [
    "CLEANABLE_TABLES",
    "AirflowHousekeeping",
    "AlarmMetric",
    "AlarmPolicy",
    "AlbResources",
    "ArchiveClass",
    "Alerts",
    "ApplicationCheck",
    "AssetReplication",
    "BackupRule",
    "Backups",
    "BucketName",
    "BusinessCheck",
    "CONFIG_ENV_VAR",
    "CapacityCheck",
    "CertificateCheck",
    "Checks",
    "ConfigBackup",
    "ConfigError",
    "Cost",
    "DEFAULT_BACKUP_RULES",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_DR_TARGETS",
    "DEFAULT_SEVERITIES",
    "DR_COMPONENTS",
    "DatabaseMaintenanceCheck",
    "DatabaseWatch",
    "DisasterRecovery",
    "DrComponentName",
    "DrDrill",
    "DrTarget",
    "EcsCheck",
    "EcsResources",
    "EcsService",
    "ElastiCacheCheck",
    "ElastiCacheResources",
    "ErrorSummary",
    "FirehoseStream",
    "KpiCheck",
    "Kpis",
    "LOG_RETENTION_DAYS",
    "LogArchive",
    "LogClass",
    "LogLifecycle",
    "LogPipeline",
    "LogResources",
    "LogTransition",
    "Lower",
    "LowerPercent",
    "MAX_CONFIG_BYTES",
    "MAX_ERRORS_SHOWN",
    "MAX_MESSAGE_CHARS",
    "MAX_NESTING",
    "MAX_VALUES",
    "MaintenanceStatus",
    "MetricWindowConfig",
    "Minutes",
    "Monitoring",
    "MonthlySummary",
    "NotificationTopic",
    "OpenIngressAllowance",
    "OverviewDashboard",
    "PendingUpdates",
    "Percent",
    "PerformanceWatch",
    "PlatformConfig",
    "PositiveSeconds",
    "Prices",
    "REPO_ROOT",
    "RdsCheck",
    "RdsResources",
    "Regions",
    "Reports",
    "ReportsLifecycle",
    "Reviews",
    "Resources",
    "RestoreTest",
    "RightSizing",
    "ScalingPolicy",
    "SecurityCheck",
    "SeverityName",
    "SeverityPolicy",
    "StackDrift",
    "StorageClass",
    "TlsEndpoint",
    "UnusedResourcesCheck",
    "Upper",
    "UpperPercent",
    "VulnerabilityCheck",
    "Watch",
    "Workers",
    "config_path",
    "known_regions",
    "load_config",
    "parse_config",
]
