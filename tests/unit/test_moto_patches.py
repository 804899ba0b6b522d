"""The sandbox's moto patches, checked through boto3: GetMetricData (percentiles, metric math), Logs
Insights, DescribeAlarmHistory, EC2 listings that page, Cost Explorer (cost and usage, forecast,
anomalies), the credential report's root row, ECS ListTasks by service and staged target health."""

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


@pytest.fixture
def ledger():
    from datetime import date

    from sandbox import moto_ce

    moto_ce.LEDGER.reset()
    for day in range(1, 62):  # September and October 2026, two services
        moment = date(2026, 9, 1) + timedelta(days=day - 1)
        moto_ce.LEDGER.daily[moment] = {"Amazon RDS": 10.0, "Amazon ECS": float(day)}
    moto_ce.LEDGER.anomalies[:] = [{"AnomalyId": f"a{i}", "AnomalyStartDate": f"2026-10-{i + 1:02d}",
                                    "Impact": {"TotalImpact": 5.0}} for i in range(5)]
    with mock_aws():
        yield boto3.client("ce", region_name="us-east-1")
    moto_ce.LEDGER.reset()


def test_cost_and_usage_answers_any_period_from_the_ledger(ledger):
    monthly = ledger.get_cost_and_usage(TimePeriod={"Start": "2026-09-01", "End": "2026-11-01"},
                                        Granularity="MONTHLY", Metrics=["UnblendedCost"],
                                        GroupBy=[{"Type": "DIMENSION", "Key": "SERVICE"}])["ResultsByTime"]
    assert [r["TimePeriod"]["Start"] for r in monthly] == ["2026-09-01", "2026-10-01"]
    october = {g["Keys"][0]: float(g["Metrics"]["UnblendedCost"]["Amount"]) for g in monthly[1]["Groups"]}
    assert october == {"Amazon RDS": 310.0, "Amazon ECS": float(sum(range(31, 62)))}
    daily = ledger.get_cost_and_usage(TimePeriod={"Start": "2026-10-01", "End": "2026-10-03"}, Granularity="DAILY",
                                      Metrics=["UnblendedCost"])["ResultsByTime"]
    assert [float(r["Total"]["UnblendedCost"]["Amount"]) for r in daily] == [41.0, 42.0]


def test_cost_and_usage_queue_of_canned_replies_still_wins(ledger):
    from moto.backends import get_backend  # moto's documented queue, filled through its backend

    canned = {"ResultsByTime": [{"TimePeriod": {"Start": "2020-01-01", "End": "2020-01-02"},
                                 "Total": {"UnblendedCost": {"Amount": "1.5", "Unit": "USD"}}, "Groups": []}]}
    get_backend("ce")["123456789012"]["aws"].cost_usage_results_queue.append(canned)
    answer = ledger.get_cost_and_usage(TimePeriod={"Start": "2026-10-01", "End": "2026-10-02"}, Granularity="DAILY",
                                       Metrics=["UnblendedCost"])
    assert answer["ResultsByTime"][0]["Total"]["UnblendedCost"]["Amount"] == "1.5"


def test_cost_forecast_from_the_last_two_weeks_with_an_interval(ledger):
    forecast = ledger.get_cost_forecast(TimePeriod={"Start": "2026-10-20", "End": "2026-11-01"},
                                        Metric="UNBLENDED_COST", Granularity="MONTHLY", PredictionIntervalLevel=80)
    mean = sum(10 + d for d in range(36, 50)) / 14  # Oct 6-19: ECS costs its day number, RDS 10
    assert float(forecast["Total"]["Amount"]) == pytest.approx(mean * 12)
    [result] = forecast["ForecastResultsByTime"]
    assert float(result["PredictionIntervalLowerBound"]) < float(result["MeanValue"]) < \
        float(result["PredictionIntervalUpperBound"])
    with pytest.raises(ledger.exceptions.DataUnavailableException):
        ledger.get_cost_forecast(TimePeriod={"Start": "2027-06-01", "End": "2027-07-01"}, Metric="UNBLENDED_COST",
                                 Granularity="MONTHLY")


def test_anomalies_filter_by_date_and_page(ledger):
    first = ledger.get_anomalies(DateInterval={"StartDate": "2026-10-02", "EndDate": "2026-10-31"}, MaxResults=3)
    assert [a["AnomalyId"] for a in first["Anomalies"]] == ["a1", "a2", "a3"]
    rest = ledger.get_anomalies(DateInterval={"StartDate": "2026-10-02", "EndDate": "2026-10-31"}, MaxResults=3,
                                NextPageToken=first["NextPageToken"])
    assert [a["AnomalyId"] for a in rest["Anomalies"]] == ["a4"] and "NextPageToken" not in rest


def test_credential_report_starts_with_the_root_account():
    import csv
    import io

    from sandbox import moto_iam

    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        iam.create_user(UserName="carol")
        iam.generate_credential_report()
        moto_iam.ROOT.access_key_active = True
        try:
            rows = list(csv.DictReader(io.StringIO(iam.get_credential_report()["Content"].decode())))
        finally:
            moto_iam.ROOT.__init__()
    assert [r["user"] for r in rows] == ["<root_account>", "carol"]
    assert (rows[0]["access_key_1_active"], rows[0]["mfa_active"]) == ("true", "true")


def test_ecs_list_tasks_filters_by_service_as_ecs_does():
    with mock_aws():
        ec2, ecs = boto3.client("ec2", region_name="us-east-1"), boto3.client("ecs", region_name="us-east-1")
        subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
        group = ec2.create_security_group(GroupName="tasks", Description="tasks")["GroupId"]
        ecs.create_cluster(clusterName="c")
        ecs.register_task_definition(family="f", containerDefinitions=[{"name": "app", "image": "nginx", "memory": 64}])
        network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}
        arns = {service: ecs.run_task(cluster="c", taskDefinition="f", launchType="FARGATE", group=f"service:{service}",
                                      networkConfiguration=network)["tasks"][0]["taskArn"]
                for service in ("web", "worker")}
        assert ecs.list_tasks(cluster="c", serviceName="web")["taskArns"] == [arns["web"]]
        assert sorted(ecs.list_tasks(cluster="c")["taskArns"]) == sorted(arns.values())  # no filter: all


def test_staged_target_health_replaces_what_moto_reports_for_registered_targets_only():
    from sandbox import moto_elbv2

    with mock_aws():
        ec2, elb = boto3.client("ec2", region_name="us-east-1"), boto3.client("elbv2", region_name="us-east-1")
        vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        group = elb.create_target_group(Name="tg", Protocol="HTTP", Port=8080, VpcId=vpc)["TargetGroups"][0]
        elb.register_targets(TargetGroupArn=group["TargetGroupArn"], Targets=[{"Id": instance}])
        moto_elbv2.HEALTH[instance] = ("unhealthy", "Target.Timeout", "Request timed out")
        try:
            [health] = elb.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]
            assert health["TargetHealth"] == {"State": "unhealthy", "Reason": "Target.Timeout",
                                              "Description": "Request timed out"}
            moto_elbv2.HEALTH.clear()
            [health] = elb.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]
            assert health["TargetHealth"]["State"] == "healthy"
        finally:
            moto_elbv2.HEALTH.clear()


# -- moto_monitoring: what the monitoring checks ask and moto 5.2.5 cannot answer ----------------------
@pytest.fixture
def staged():
    from sandbox import moto_monitoring

    moto_monitoring.reset()
    yield moto_monitoring
    moto_monitoring.reset()


def test_drift_detection_runs_then_reports_the_staged_drift_page_by_page(staged):
    with mock_aws():
        cfn = boto3.client("cloudformation", region_name="us-east-1")
        cfn.create_stack(StackName="platform", TemplateBody=json.dumps({"Resources": {
            "B": {"Type": "AWS::S3::Bucket"}, "Q": {"Type": "AWS::SQS::Queue"}}}))
        staged.STACK_DRIFTS["platform"] = [
            {"LogicalResourceId": name, "ResourceType": "AWS::S3::Bucket", "StackResourceDriftStatus": status,
             "PropertyDifferences": [], "Timestamp": ANCHOR} for name, status in (("B", "MODIFIED"), ("Q", "DELETED"))]
        detection = cfn.detect_stack_drift(StackName="platform")["StackDriftDetectionId"]
        first = cfn.describe_stack_drift_detection_status(StackDriftDetectionId=detection)
        then = cfn.describe_stack_drift_detection_status(StackDriftDetectionId=detection)
        assert first["DetectionStatus"] == "DETECTION_IN_PROGRESS" and "StackDriftStatus" not in first
        assert (then["DetectionStatus"], then["StackDriftStatus"], then["DriftedStackResourceCount"]) == (
            "DETECTION_COMPLETE", "DRIFTED", 2)
        page = cfn.describe_stack_resource_drifts(StackName="platform", MaxResults=1)
        rest = cfn.describe_stack_resource_drifts(StackName="platform", MaxResults=1, NextToken=page["NextToken"])
        assert [d["LogicalResourceId"] for d in [*page["StackResourceDrifts"], *rest["StackResourceDrifts"]]] == [
            "B", "Q"]
        only = cfn.describe_stack_resource_drifts(StackName="platform", StackResourceDriftStatusFilters=["DELETED"])
        assert [d["LogicalResourceId"] for d in only["StackResourceDrifts"]] == ["Q"]
        with pytest.raises(cfn.exceptions.ClientError, match="Stack with id missing does not exist"):
            cfn.detect_stack_drift(StackName="missing")


def test_pending_maintenance_and_performance_insights_as_rds_reports_them(staged):
    with mock_aws():
        rds = boto3.client("rds", region_name="us-east-1")
        made = {}
        for name, insights in (("with-pi", True), ("without-pi", False)):
            made[name] = rds.create_db_instance(
                DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres", MasterUsername="u",
                MasterUserPassword="password-1", AllocatedStorage=20,
                EnablePerformanceInsights=insights)["DBInstance"]["DBInstanceArn"]
        listed = {d["DBInstanceIdentifier"]: d.get("PerformanceInsightsEnabled")
                  for d in rds.describe_db_instances()["DBInstances"]}
        assert listed == {"with-pi": True, "without-pi": False}
        staged.PENDING_MAINTENANCE[made["with-pi"]] = [{"Action": "system-update", "Description": "OS upgrade",
                                                        "AutoAppliedAfterDate": ANCHOR}]
        mine = rds.describe_pending_maintenance_actions(ResourceIdentifier=made["with-pi"])
        assert [a["Action"] for r in mine["PendingMaintenanceActions"] for a in r["PendingMaintenanceActionDetails"]] \
            == ["system-update"]
        assert rds.describe_pending_maintenance_actions(ResourceIdentifier=made["without-pi"])[
            "PendingMaintenanceActions"] == []
        with pytest.raises(rds.exceptions.ClientError, match="ResourceNotFoundFault"):
            rds.describe_pending_maintenance_actions(ResourceIdentifier="arn:aws:rds:us-east-1:123456789012:db:gone")


def test_update_actions_filter_by_cluster_and_status_and_page(staged):
    staged.UPDATE_ACTIONS.extend({"ServiceUpdateName": f"patch-{i}", "CacheClusterId": cluster,
                                  "UpdateActionStatus": status}
                                 for i, (cluster, status) in enumerate([("redis", "not-applied"), ("redis", "complete"),
                                                                        ("other", "not-applied"),
                                                                        ("redis", "scheduled")]))
    with mock_aws():
        cache = boto3.client("elasticache", region_name="us-east-1")
        pages = cache.get_paginator("describe_update_actions").paginate(
            CacheClusterIds=["redis"], UpdateActionStatus=["not-applied", "scheduled"],
            PaginationConfig={"PageSize": 20})
        assert [a["ServiceUpdateName"] for p in pages for a in p["UpdateActions"]] == ["patch-0", "patch-3"]
        first = cache.describe_update_actions(CacheClusterIds=["redis"], MaxRecords=20)
        assert len(first["UpdateActions"]) == 3 and "Marker" not in first


def test_an_unconfirmed_subscription_is_listed_as_pending_confirmation(staged):
    from moto.backends import get_backend

    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        topic = sns.create_topic(Name="critical")["TopicArn"]
        email = sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="a@example.com",
                              ReturnSubscriptionArn=True)["SubscriptionArn"]
        sms = sns.subscribe(TopicArn=topic, Protocol="sms", Endpoint="+15555550100",
                            ReturnSubscriptionArn=True)["SubscriptionArn"]
        get_backend("sns")["123456789012"]["us-east-1"].subscriptions[sms].attributes["PendingConfirmation"] = "true"
        listed = {s["Protocol"]: s["SubscriptionArn"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)[
            "Subscriptions"]}
        assert listed == {"email": email, "sms": "PendingConfirmation"}
        assert {s["SubscriptionArn"] for s in sns.list_subscriptions()["Subscriptions"]} == {email,
                                                                                            "PendingConfirmation"}


def test_the_moto_server_answers_performance_insights_for_an_instance_with_it_on(staged):
    from moto.server import ThreadedMotoServer

    from sandbox import moto_patches

    moto_patches.apply()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        rds = boto3.client("rds", region_name="us-east-1", endpoint_url=endpoint)
        ids = {}
        for name, insights in (("with-pi", True), ("without-pi", False)):
            rds.create_db_instance(
                DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres", MasterUsername="u",
                MasterUserPassword="password-1", AllocatedStorage=20, EnablePerformanceInsights=insights)
            ids[name] = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0][
                "DbiResourceId"]
        pi = boto3.client("pi", region_name="us-east-1", endpoint_url=endpoint)
        asked = {"ServiceType": "RDS", "StartTime": ANCHOR - timedelta(hours=3), "EndTime": ANCHOR,
                 "Metric": "db.load.avg", "GroupBy": {"Group": "db.sql_tokenized", "Limit": 1}}
        answer = pi.describe_dimension_keys(Identifier=ids["with-pi"], **asked)
        assert answer["Keys"] == staged.PI_TOP_SQL[:1]
        with pytest.raises(pi.exceptions.InvalidArgumentException, match="not enabled"):
            pi.describe_dimension_keys(Identifier="db-NOSUCHINSTANCE", **asked)
    finally:
        server.stop()
