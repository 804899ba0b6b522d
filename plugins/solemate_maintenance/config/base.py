"""What every part of the schema is built from: the strict model, threshold pairs, the value types
(percent, minutes, an S3 bucket name, an RDS identifier) and the AWS regions botocore knows."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

Percent = Annotated[float, Field(ge=0, le=100)]
PositiveSeconds = Annotated[int, Field(gt=0, le=86_400)]
Minutes = Annotated[int, Field(gt=0, le=60 * 24 * 31)]
SeverityName = Literal["P1", "P2", "P3", "P4"]



class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise: a misspelt threshold must not silently fall back
    # to its default. Strict types: YAML's `yes` must not become 1 minute, "5" must not become 5, and a
    # NaN threshold (which no value ever crosses) is refused.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


@cache
def known_regions() -> frozenset[str]:
    # botocore ships the endpoint data; read the file directly: building a botocore session costs
    # ~0.3 s of CPU, paid by the DAG processor on every parse of every DAG file.
    import importlib.util

    spec = importlib.util.find_spec("botocore")
    data_dir = Path(spec.origin).parent / "data" if spec and spec.origin else None
    for name in ("endpoints.json", "endpoints.json.gz"):
        if data_dir and (data_dir / name).exists():
            raw = (data_dir / name).read_bytes()
            if name.endswith(".gz"):
                import gzip

                raw = gzip.decompress(raw)
            partitions = json.loads(raw)["partitions"]
            return frozenset(region for partition in partitions for region in partition["regions"])
    return frozenset()  # no endpoint data: do not block the config on it




class Upper(_Strict):
    """A metric that is bad when high: warning at or above `warning`, failure at or above `critical`."""

    warning: float
    critical: float

    @model_validator(mode="after")
    def _ordered(self) -> Upper:
        if self.warning > self.critical:
            raise ValueError(f"warning ({self.warning}) must not exceed critical ({self.critical})")
        return self


class UpperPercent(Upper):
    warning: Percent
    critical: Percent


class Lower(_Strict):
    """A metric that is bad when low: warning at or below `warning`, failure at or below `critical`."""

    warning: float
    critical: float

    @model_validator(mode="after")
    def _ordered(self) -> Lower:
        if self.warning < self.critical:
            raise ValueError(f"warning ({self.warning}) must not be below critical ({self.critical})")
        return self


class LowerPercent(Lower):
    warning: Percent
    critical: Percent




def _s3_bucket_name(value: str) -> str:
    """The naming rules S3 enforces beyond the character set (the pattern checks length and characters)."""
    if ".." in value or ".-" in value or "-." in value:
        raise ValueError(f"S3 bucket names cannot contain '..', '.-' or '-.' ({value!r})")
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", value):
        raise ValueError(f"S3 bucket names cannot look like an IP address ({value!r})")
    if value.startswith(("xn--", "sthree-")) or value.endswith(("-s3alias", "--ol-s3", "--x-s3")):
        raise ValueError(f"S3 reserves this bucket-name prefix or suffix ({value!r})")
    return value


BucketName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"), AfterValidator(_s3_bucket_name)]




_DB_IDENTIFIER = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$"
