"""The dashboard's FastAPI app, mounted by the api-server under /solemate (plugins/solemate_dashboard.py).

Every route needs an Airflow login with read access to DAGs, checked by Airflow's own security
dependency (a bearer token or the UI's session cookie, whichever auth manager is configured). The
reports are read with the Amazon provider's S3 hook through ``aws_default``: the api-server's role
needs only the read-only policy's reports-bucket statements."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response

from solemate_maintenance.config import PlatformConfig, load_config
from solemate_maintenance.dashboard.data import Dashboard, collect
from solemate_maintenance.dashboard.page import render
from solemate_maintenance.report_store import ReportStore

AWS_CONN_ID = "aws_default"


def reports_of(config: PlatformConfig) -> ReportStore:
    return ReportStore(bucket=config.reports.bucket, prefix=config.reports.prefix, aws_conn_id=AWS_CONN_ID,
                       region_name=config.regions.primary)


def _login_required(request: Request, exc: HTTPException) -> Response:
    """A person opening the page without a session gets a way in, not a JSON error."""
    if exc.status_code in (401, 403) and "text/html" in request.headers.get("accept", ""):
        message = ("Log in to Airflow first." if exc.status_code == 401
                   else "Your Airflow user may not read DAGs, which this dashboard needs.")
        here = quote(f"{request.scope.get('root_path', '')}/")  # where the api-server mounted the app
        return HTMLResponse(f'<!doctype html><title>SoleMate maintenance</title><p>{message} '
                            f'<a href="/auth/login?next={here}" target="_top">Log in</a></p>',
                            status_code=exc.status_code)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(config_loader: Callable[[], PlatformConfig] = load_config,
               guard: Callable | None = None) -> FastAPI:
    """``guard``: the dependency that checks the caller (Airflow's ``requires_access_dag("GET")``)."""
    if guard is None:
        from airflow.api_fastapi.core_api.security import requires_access_dag

        guard = requires_access_dag("GET")
    app = FastAPI(title="SoleMate maintenance dashboard", dependencies=[Depends(guard)])
    app.add_exception_handler(HTTPException, _login_required)

    def board() -> Dashboard:
        config = config_loader()
        return collect(reports_of(config), config.environment, datetime.now(UTC))

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return render(board())

    @app.get("/api/summary")
    def summary() -> dict:
        return board().as_json()

    return app
