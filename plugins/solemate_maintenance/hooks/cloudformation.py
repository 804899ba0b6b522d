"""The provider's CloudFormation hook with the waiter it lacks: drift detection finished.

The Amazon provider loads custom waiters from a JSON file per client (``waiter_path``); this hook
points it at ours, so the drift wait runs through the provider's waiter machinery and its
``AwsBaseWaiterTrigger`` like any other. A failed detection counts as finished: the operator reads
its reason (the stack's resources it could not check) instead of the wait failing blind.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.providers.amazon.aws.hooks.cloud_formation import CloudFormationHook

WAITERS = Path(__file__).parent / "waiters" / "cloudformation.json"


class StackDriftHook(CloudFormationHook):
    @property
    def waiter_path(self) -> os.PathLike[str] | None:
        return WAITERS
