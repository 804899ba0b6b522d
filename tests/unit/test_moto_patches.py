"""The sandbox's moto patches, checked through boto3: GetMetricData (percentiles, metric math), Logs
Insights, DescribeAlarmHistory and EC2 listings that page."""

from __future__ import annotations

import json
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


# -- Logs Insights (sandbox/moto_logs.py) ------------------------------------------------------------------
def test_logs_insights_filters_json_fields_and_reports_statistics():
    import time

    with mock_aws():
        logs = boto3.client("logs", region_name="us-east-1")
        logs.create_log_group(logGroupName="app")
        logs.create_log_stream(logGroupName="app", logStreamName="s")
        now = int(time.time() * 1000)
        events = [{"event_type": "AUTH_FAILED", "client_ip": "10.0.0.1", "user_id": "a"},
                  {"event_type": "LOGIN_OK", "client_ip": "10.0.0.2", "user_id": "b"},
                  {"event_type": "RATE_LIMITED", "client_ip": "10.0.0.3"}]
        logs.put_log_events(logGroupName="app", logStreamName="s", logEvents=[
            *({"timestamp": now + i, "message": json.dumps(e)} for i, e in enumerate(events)),
            {"timestamp": now + 9, "message": "not json at all"}])
        query = logs.start_query(logGroupName="app", startTime=now // 1000 - 60, endTime=now // 1000 + 60,
                                 queryString='fields @timestamp, event_type, client_ip | filter event_type in '
                                             '["AUTH_FAILED", "RATE_LIMITED"] | limit 1')["queryId"]
        first = logs.get_query_results(queryId=query)
        assert first["status"] == "Running" and first["results"] == []  # callers must poll, as on AWS
        done = logs.get_query_results(queryId=query)
        assert done["status"] == "Complete" and done["statistics"]["recordsMatched"] == 2
        [row] = [{f["field"]: f["value"] for f in r} for r in done["results"]]
        assert row["event_type"] == "RATE_LIMITED" and row["client_ip"] == "10.0.0.3"  # newest first, limit 1
        equals = logs.start_query(logGroupName="app", startTime=now // 1000 - 60, endTime=now // 1000 + 60,
                                  queryString='fields user_id | filter event_type = "LOGIN_OK"')["queryId"]
        logs.get_query_results(queryId=equals)
        rows = logs.get_query_results(queryId=equals)["results"]
        assert [{f["field"]: f["value"] for f in r if f["field"] != "@ptr"} for r in rows] == [{"user_id": "b"}]


# -- DescribeAlarmHistory (moto_patches) and listings that page (moto_paging) -----------------------------
def test_alarm_history_records_state_changes_and_pages():
    from datetime import UTC, datetime

    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
        cloudwatch.put_metric_alarm(AlarmName="errors", Namespace="N", MetricName="M", Statistic="Sum", Period=60,
                                    EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
        start = datetime.now(UTC) - timedelta(minutes=1)
        for state in ("ALARM", "OK", "ALARM"):
            cloudwatch.set_alarm_state(AlarmName="errors", StateValue=state, StateReason=f"to {state}")
        pages = list(cloudwatch.get_paginator("describe_alarm_history").paginate(
            AlarmName="errors", HistoryItemType="StateUpdate", StartDate=start, EndDate=datetime.now(UTC),
            PaginationConfig={"PageSize": 2}))
        items = [i for p in pages for i in p["AlarmHistoryItems"]]
        assert len(pages) == 2 and [i["HistorySummary"] for i in items] == [
            "Alarm updated from OK to ALARM", "Alarm updated from ALARM to OK", "Alarm updated from OK to ALARM"]
        assert json.loads(items[0]["HistoryData"])["newState"]["stateValue"] == "ALARM"
        later = cloudwatch.describe_alarm_history(StartDate=datetime.now(UTC) + timedelta(minutes=1))
        assert later["AlarmHistoryItems"] == []


def test_ec2_listings_page_by_max_results():
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        for i in range(7):
            ec2.create_volume(AvailabilityZone="us-east-1a", Size=1 + i)
        pages = list(ec2.get_paginator("describe_volumes").paginate(PaginationConfig={"PageSize": 5}))
        assert [len(p["Volumes"]) for p in pages] == [5, 2]
        assert len({v["VolumeId"] for p in pages for v in p["Volumes"]}) == 7
        assert len(ec2.describe_volumes()["Volumes"]) == 7  # without MaxResults: everything, as before


def test_ssm_parameters_page_by_max_results_up_to_fifty():
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        for i in range(60):
            ssm.put_parameter(Name=f"/p/{i:02d}", Type="String", Value="x")
        pages = [len(p["Parameters"]) for p in ssm.get_paginator("describe_parameters").paginate(
            PaginationConfig={"PageSize": 50})]
        assert pages == [50, 10]  # moto alone: six pages of 10 and an empty seventh
        assert len(ssm.describe_parameters()["Parameters"]) == 10  # AWS's default page
