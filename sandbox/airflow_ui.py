"""`make airflow`: the real Airflow UI on the sandbox, in one command.

Starts the sandbox (AWS in moto, PostgreSQL, a Slack sink, an SMTP sink), seeds a platform with the
demo's problems today and three healthy days before it (something to backfill), and starts
`airflow standalone` (scheduler, DAG processor, triggerer, API server; LocalExecutor) with our DAGs and
plugin and connections pointing at the sandbox. Prints the URL and the login, then waits.

From the UI: unpause and trigger ``daily_maintenance``, fill the DR forms, approve the failover gate,
backfill past days, open the maintenance dashboard. Ctrl-C stops everything this started (Airflow's
process group, the sandbox's servers) and removes their files.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sandbox.demo import DEMO_DEFAULTS, current_hour
from sandbox.platform import PROBLEMS
from sandbox.standalone import Standalone
from sandbox.world import Sandbox

HISTORY_DAYS = 70  # hourly metrics far enough back for a monthly review of last month


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="the UI's and REST API's port (default 8080)")
    parser.add_argument("--problems", default=None,
                        help=f"today's problems, comma-separated, from: {', '.join(sorted(PROBLEMS))} "
                             "(default: the daily demo's)")
    args = parser.parse_args(argv)
    chosen = DEMO_DEFAULTS["daily_maintenance"] if args.problems is None else args.problems.split(",")
    problems = frozenset(p for p in chosen if p)
    if unknown := sorted(problems - PROBLEMS.keys()):
        parser.error(f"unknown problems {unknown}; known: {', '.join(sorted(PROBLEMS))}")
    if not port_is_free(args.port):
        parser.error(f"port {args.port} is in use; choose another: make airflow AIRFLOW_PORT=8081")

    # `kill` stops it as cleanly as Ctrl-C does; and Ctrl-C works even when started from a script in
    # the background (a shell starts background jobs with SIGINT ignored, and Python keeps that).
    # A closed terminal (SIGHUP) too: Airflow runs in its own session and would outlive the launcher.
    for stop_signal in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(stop_signal, _interrupt)
    started = time.monotonic()
    airflow = None
    try:
        with tempfile.TemporaryDirectory(prefix="solemate-airflow-ui-") as home, \
                Sandbox(allow_failover=True, history_days=HISTORY_DAYS) as sandbox:
            try:
                now = current_hour(datetime.now(UTC))
                midnight = now.replace(hour=2)
                sandbox.seed_days({**{midnight - timedelta(days=d): set() for d in (3, 2, 1)}, now: problems})
                print(f"Sandbox up (moto {sandbox.endpoint_url}, Slack sink {sandbox.slack.url}); problems today: "
                      f"{', '.join(sorted(problems)) or 'none'}", flush=True)
                print(f"Starting Airflow in {home} (about a minute)...", flush=True)
                airflow = Standalone(sandbox, Path(home), port=args.port, paused_at_creation=True, scheduled=True,
                                     parallelism=4)
                airflow.start()
                print(f"""
Airflow is up in {time.monotonic() - started:.0f} s: {airflow.api_url}
  login:      admin / {airflow.admin_password}
  dashboard:  {airflow.api_url}/solemate/ (also under Browse in the UI)
  Slack:      {sandbox.slack.log_path} (every message the alerts posted, one JSON per line)
  sandbox:    {sandbox.workdir}
The DAGs start paused: unpause one, then trigger it or run a backfill (three past days are seeded).
Press Ctrl-C to stop everything and remove it.""", flush=True)
                while airflow.running():
                    time.sleep(1)
                print("Airflow stopped by itself; its log:\n" + airflow.log_tail(4000), flush=True)
                return 1
            except (TimeoutError, RuntimeError) as error:
                print(f"Airflow did not come up: {error}", flush=True)
                return 1
            finally:
                # A second Ctrl-C must not cut the clean-up short and leave servers behind.
                for stop_signal in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(stop_signal, signal.SIG_IGN)
                print("\nStopping Airflow and the sandbox...", flush=True)
                if airflow is not None:
                    airflow.stop()
    except KeyboardInterrupt:
        pass
    print("Stopped; nothing is left running.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
