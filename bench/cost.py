"""Cost Explorer requests of the monthly cost review (each one is billed): a first review of a month,
a re-run of it, and a review of an older month, against the sandbox's Cost Explorer in moto."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from bench.fleet import FLEET_ENV, FLEET_UNSET


def cost_explorer() -> dict[str, float]:
    saved = dict(os.environ)
    os.environ.update(FLEET_ENV)
    for name in FLEET_UNSET:
        os.environ.pop(name, None)
    try:
        return _cost_explorer()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _cost_explorer() -> dict[str, float]:
    import boto3
    from moto import mock_aws

    from sandbox import moto_ce, moto_patches
    from sandbox.platform import Platform
    from solemate_maintenance.config import load_config
    from solemate_maintenance.operators.base import MEASUREMENTS_XCOM_KEY
    from solemate_maintenance.operators.reviews.cost import CostReviewOperator
    from tests.helpers import make_context

    moto_patches.apply()
    config = load_config()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    results = {}
    with mock_aws():
        platform = Platform(config, lambda service, region=None: boto3.client(
            service, region_name=region or config.regions.primary))
        platform.create()
        platform.seed(now)
        operator = CostReviewOperator(task_id="cost_review", settings=config.cost, bucket=config.reports.bucket,
                                      reports_prefix=config.reports.prefix)
        for name, anchor in (("first_run", now), ("rerun", now), ("older_month", now.replace(day=1, month=1)
                                                                    if now.month > 3 else now.replace(day=1))):
            before = sum(moto_ce.LEDGER.calls.values())
            context = make_context(anchor=anchor, task_id=operator.task_id, dag_id="monthly_review")
            operator.execute(context)
            asked = sum(moto_ce.LEDGER.calls.values()) - before
            month = context["ti"].pushed[MEASUREMENTS_XCOM_KEY]["month"]
            print(f"  {name:<12} month {month}: {asked} Cost Explorer request(s)")
            results[f"cost_explorer_{name}_calls"] = float(asked)
    return {"cost_explorer_first_run_calls": results["cost_explorer_first_run_calls"],
            "cost_explorer_rerun_calls": results["cost_explorer_rerun_calls"]}
