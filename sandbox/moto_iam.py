"""The credential report's root row: AWS always lists `<root_account>` first, moto lists IAM users
only. The security audit's root checks (keys, MFA, recent use) read that row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from moto.core import DEFAULT_ACCOUNT_ID
from moto.iam.models import IAMBackend


@dataclass
class RootAccount:
    mfa_active: bool = True
    access_key_active: bool = False
    password_last_used: datetime | None = None

    def row(self) -> str:
        used = self.password_last_used.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00") \
            if self.password_last_used else "no_information"
        key = "true" if self.access_key_active else "false"
        rotated = "2025-01-01T00:00:00+00:00" if self.access_key_active else "N/A"
        return (f"<root_account>,arn:aws:iam::{DEFAULT_ACCOUNT_ID}:root,2024-01-01T00:00:00+00:00,not_supported,"
                f"{used},not_supported,not_supported,{'true' if self.mfa_active else 'false'},{key},{rotated},N/A,N/A,"
                "N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n")


ROOT = RootAccount()
_moto_get_credential_report = IAMBackend.get_credential_report


def get_credential_report(self: IAMBackend) -> str:
    header, _, users = _moto_get_credential_report(self).partition("\n")
    return f"{header}\n{ROOT.row()}{users}"


def apply() -> None:
    IAMBackend.get_credential_report = get_credential_report  # type: ignore[method-assign]
