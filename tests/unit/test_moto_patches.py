"""The sandbox's GetMetricData: percentiles and metric math, checked through boto3 against moto."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from moto import mock_aws

from sandbox.moto_patches import percentile
from tests.helpers import ANCHOR


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([5.0], 50) == 5.0


@pytest.fixture
def cloudwatch():
    with mock_aws():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        for minute in range(10):
            client.put_metric_data(Namespace="Test", MetricData=[
                {"MetricName": "Latency", "Timestamp": ANCHOR + timedelta(minutes=minute),
                 "Values": [float(v) for v in range(1, 101)]},
                {"MetricName": "Requests", "Timestamp": ANCHOR + timedelta(minutes=minute), "Value": 200.0},
                {"MetricName": "Errors", "Timestamp": ANCHOR + timedelta(minutes=minute), "Value": float(minute)},
            ])
        # A datapoint with another dimension set must not leak into the dimensionless series.
        client.put_metric_data(Namespace="Test", MetricData=[
            {"MetricName": "Requests", "Timestamp": ANCHOR, "Value": 1e6,
             "Dimensions": [{"Name": "Host", "Value": "a"}]}])
        yield client


def query(client, *queries, period=600):
    def stat(metric_id, name, statistic, return_data=True):
        return {"Id": metric_id, "ReturnData": return_data, "MetricStat": {
            "Metric": {"Namespace": "Test", "MetricName": name}, "Period": period, "Stat": statistic}}

    built = [stat(*q) if isinstance(q, tuple) else q for q in queries]
    response = client.get_metric_data(MetricDataQueries=built, StartTime=ANCHOR,
                                       EndTime=ANCHOR + timedelta(minutes=10), ScanBy="TimestampAscending")
    return {r["Id"]: r["Values"] for r in response["MetricDataResults"]}


def test_extended_statistics(cloudwatch):
    result = query(cloudwatch, ("p95", "Latency", "p95"), ("p99", "Latency", "p99.9"), ("avg", "Latency", "Average"),
                   ("n", "Latency", "SampleCount"))
    assert result == {"p95": [95.0], "p99": [100.0], "avg": [50.5], "n": [1000.0]}


def test_periods_bucket_the_window(cloudwatch):
    result = query(cloudwatch, ("errors", "Errors", "Maximum"), period=300)
    assert result["errors"] == [4.0, 9.0]


def test_metric_math_with_fill_and_hidden_inputs(cloudwatch):
    result = query(
        cloudwatch,
        ("req", "Requests", "Sum", False),
        ("err", "Errors", "Sum", False),
        ("missing", "NoSuchMetric", "Sum", False),
        {"Id": "rate", "Expression": "100 * (err + FILL(missing, 0)) / req"},
    )
    assert list(result) == ["rate"]
    assert result["rate"] == [pytest.approx(100 * 45 / 2000)]


def test_division_by_zero_drops_the_point(cloudwatch):
    result = query(cloudwatch, ("err", "Errors", "Minimum", False), {"Id": "inverse", "Expression": "1 / err"},
                   period=60)
    assert len(result["inverse"]) == 9  # minute 0 has Errors == 0


def test_unsupported_expression_is_a_validation_error(cloudwatch):
    with pytest.raises(cloudwatch.exceptions.ClientError, match="ValidationError|Only FILL"):
        query(cloudwatch, ("req", "Requests", "Sum"), {"Id": "x", "Expression": "ANOMALY_DETECTION_BAND(req)"})
