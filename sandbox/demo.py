"""`make demo`: run daily_maintenance end to end on the sandbox and show what happened.

Starts the sandbox, seeds a platform with a few deliberate problems, runs
``airflow dags test <dag> <date>`` in a separate process (exactly as an engineer would), then prints
the findings, the Slack messages the sink received and where the report is.
``make demo DEMO_ARGS="--dag weekly_backup_verification"`` runs the backup verification with a real
restore test and prints the measured RTO and RPO; ``--dag weekly_review`` the database, certificate,
vulnerability and capacity review with its charts (``--keep DIR`` copies the PNGs); ``--dag dr_drill``
runs the DR drill and prints its table against the guide's targets (``--problems replication_stopped``
shows a missed target).
"""

from __future__ import annotations

import argparse
import email
import email.header
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sandbox.monthly import last_monthly_run
from sandbox.platform import DEMO_PROBLEMS, PROBLEMS
from sandbox.world import Sandbox, sandbox_env_for_subprocess

SEVERITY_ORDER = {"P1": 0, "P2": 1, "P3": 2, "P4": 3, None: 9}


# What each DAG's demo injects unless --problems says otherwise.
DEMO_DEFAULTS = {"daily_maintenance": sorted(DEMO_PROBLEMS), "weekly_backup_verification": ["plan_drift"],
                 "weekly_review": ["capacity_growth", "critical_cve", "database_bloat", "expiring_certificate"],
                 "monthly_review": ["cost_spike", "public_bucket", "user_without_mfa"], "dr_drill": []}
# Days of hourly metrics the sandbox keeps: a monthly review needs the whole month before its run.
HISTORY_DAYS = {"monthly_review": 70}


def current_hour(moment: datetime) -> datetime:
    """The logical date of the demo run: this hour, so the run checks the present like the 02:00 run
    does at 02:00 (a date older than alerts.page_max_age_hours would be reported as a past date)."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def mail_subject(raw: str) -> str:
    subject = email.message_from_string(raw)["Subject"] or ""
    return str(email.header.make_header(email.header.decode_header(subject)))


def run_airflow(args: list[str], env: dict[str, str], log_path: Path) -> int:
    with log_path.open("a") as log:
        return subprocess.run([sys.executable, "-m", "airflow", *args], env=env, stdout=log,
                              stderr=subprocess.STDOUT, check=False).returncode


def print_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*headers))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dag", default="daily_maintenance", choices=sorted(DEMO_DEFAULTS),
                        help="which DAG to run (weekly_backup_verification runs a real restore test, dr_drill "
                             "a DR drill in the sandbox's DR region)")
    parser.add_argument("--problems", default=None,
                        help=f"comma-separated, from: {', '.join(sorted(PROBLEMS))}; empty for a healthy world "
                             "(default: a few that show what the DAG finds)")
    parser.add_argument("--keep", type=Path, help="copy the report and Slack payloads into this folder")
    args = parser.parse_args(argv)
    dag_id = args.dag
    chosen = DEMO_DEFAULTS[dag_id] if args.problems is None else args.problems.split(",")
    problems = frozenset(p for p in chosen if p)
    unknown = sorted(problems - PROBLEMS.keys())
    if unknown:
        parser.error(f"unknown problems {unknown}; known: {', '.join(sorted(PROBLEMS))}")

    started = time.monotonic()
    now = current_hour(datetime.now(UTC))
    # A monthly run is dated by the month it reviews; the sandbox's world still describes now.
    logical_date = last_monthly_run(now) if dag_id == "monthly_review" else now
    with tempfile.TemporaryDirectory(prefix="solemate-airflow-") as home, \
            Sandbox(history_days=HISTORY_DAYS.get(dag_id, 36)) as sandbox:
        home_path = Path(home)
        env = sandbox_env_for_subprocess(sandbox, home_path)
        log_path = home_path / "airflow.log"
        print(f"Sandbox up in {time.monotonic() - started:.0f} s (moto {sandbox.endpoint_url}, "
              f"Slack sink {sandbox.slack.url}, PostgreSQL {sandbox.postgres.socket_dir})")
        sandbox.seed(now, problems)
        print("Injected problems: " + (", ".join(f"{p} ({PROBLEMS[p]})" for p in sorted(problems)) or "none"))
        if run_airflow(["db", "migrate"], env, log_path) != 0:
            print(log_path.read_text()[-3000:])
            return 1
        print(f"Running: airflow dags test {dag_id} {logical_date.isoformat()}")
        run_airflow(["dags", "test", dag_id, logical_date.isoformat()], env, log_path)

        s3 = sandbox.client("s3")
        bucket, prefix = sandbox.config.reports.bucket, sandbox.config.reports.prefix
        latest_key = f"{prefix}/{dag_id}/latest.json"
        try:
            report = json.loads(s3.get_object(Bucket=bucket, Key=latest_key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            print("No report was written. Last lines of the Airflow log:")
            print(log_path.read_text()[-5000:])
            return 1

        print(f"\nRun {report['run_id']} ({report['run_type']}), logical date {report['logical_date']}")
        print("Task states: " + ", ".join(f"{t}={s}" for t, s in report["task_states"].items()))
        finished = [line for line in log_path.read_text().splitlines() if "DagRun Finished" in line]
        if finished:
            state = finished[-1].split("state=", 1)[1].split(",", 1)[0]
            print(f"DAG run state: {state} (failed whenever a check found a P1/P2 problem)")
        rows = [[f["severity"] or "ok", f["status"], f["lifecycle"] or "", f["check"], f["resource"], f["summary"]]
                for f in sorted(report["findings"], key=lambda f: (SEVERITY_ORDER[f["severity"]], f["check"]))]
        print()
        print_table(rows, ["sev", "status", "since", "check", "resource", "summary"])
        print("\nTotals: " + json.dumps(report["totals"]["status"]) + "  " + json.dumps(report["totals"]["severity"]))
        for task_id, measured in report.get("measurements", {}).items():
            if measured.get("headline"):
                print(f"\nMeasured by {task_id}: {measured['headline']}")
        scorecard = report.get("measurements", {}).get("dr_scorecard")
        if scorecard:
            print("\nThe drill against the guide's table (minutes):")
            print_table([[r["component"], r["rto_target_minutes"], _num(r["rto_minutes"]), r["rpo_target_minutes"],
                          _num(r["rpo_minutes"]), r["verdict"]] for r in scorecard["components"]],
                        ["component", "RTO target", "RTO", "RPO target", "RPO", "verdict"])
            print(f"Created {len(scorecard['created'])}, deleted {len(scorecard['deleted'])}, "
                  f"left {len(scorecard['left'])} {scorecard['left'] or ''}")
        if dag_id == "weekly_backup_verification":
            left = [i["DBInstanceIdentifier"] for i in sandbox.client("rds").describe_db_instances()["DBInstances"]
                    if i["DBInstanceIdentifier"] != sandbox.config.resources.rds.instance_id]
            print(f"Restore copies left in RDS after the run: {len(left)} {left or ''}")
        charts = [c for measured in report.get("measurements", {}).values() for c in measured.get("charts", [])]
        if charts:
            print(f"\nCharts ({len(charts)}) next to the report:")
            for chart in charts:
                print(f"  {chart['title']}: {chart['uri']}")
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                for chart in charts:
                    target = args.keep / chart["key"].rsplit("/", 1)[-1]
                    target.write_bytes(s3.get_object(Bucket=bucket, Key=chart["key"])["Body"].read())

        messages = sandbox.slack.messages()
        print(f"\nSlack messages received by the sink: {len(messages)}")
        for message in messages:
            payload = message["payload"]
            color = payload.get("attachments", [{}])[0].get("color", "")
            print(f"  [{color}] {payload.get('text')}")
        for mail in sandbox.smtp.messages():
            print(f"E-mail to {', '.join(mail['to'])}: {mail_subject(mail['data'])}")
        print(f"\nReport: {report['report_uri']} (and report.md beside it; {latest_key})")
        print(f"In a browser: {report['report_url']}")
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for name in ("report.json", "report.md"):
                key = f"{prefix}/{dag_id}/{report['run_id']}/{name}"
                (args.keep / name).write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            (args.keep / "slack.jsonl").write_text("\n".join(json.dumps(m) for m in messages) + "\n")
            (args.keep / "airflow.log").write_text(log_path.read_text())
            print(f"Copies in {args.keep}/")
        print(f"Airflow run log: kept only with --keep. Demo took {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
