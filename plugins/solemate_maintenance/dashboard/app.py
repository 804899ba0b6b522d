"""The dashboard's FastAPI app, mounted by the api-server under /solemate (plugins/solemate_dashboard.py).

Every route needs an Airflow login allowed to read every DAG (the page shows them all), checked by the
configured auth manager: the UI's session cookie or a bearer token. No docs or schema routes. The
reports are read with the Amazon provider's S3 hook through ``aws_default``: the api-server's role
needs only include/iam/dashboard.json.

``/incidents/<id>`` is where an alert's acknowledge link leads: a page about the incident with an
Acknowledge button. Opening the link changes nothing (Slack and mail scanners open links too); the
button's POST, by a user who may edit DAGs, records who took the incident in the watch's incident
record (a conditional write), tells the channel and PagerDuty at once, and stops the escalation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response

from solemate_maintenance.config import PlatformConfig, load_config
from solemate_maintenance.dashboard.data import Dashboard, collect
from solemate_maintenance.dashboard.page import render
from solemate_maintenance.report_store import ReportStore

AWS_CONN_ID = "aws_default"
# The page runs no script and loads nothing: a link planted in a report cannot run code either. Its
# only form (acknowledge) posts to the dashboard itself.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                           "frame-ancestors 'self'; base-uri 'none'; form-action 'self'")


def reports_of(config: PlatformConfig) -> ReportStore:
    return ReportStore(bucket=config.reports.bucket, prefix=config.reports.prefix, aws_conn_id=AWS_CONN_ID,
                       region_name=config.regions.primary)


def airflow_guard() -> Callable:
    """Airflow's authentication and the auth manager's "read every DAG" (not Airflow's
    ``requires_access_dag``, which would authorise against a ``dag_id`` the caller puts in the query
    string: read access to one DAG would show all six)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user

    # No annotation: with postponed annotations FastAPI could not resolve a locally imported type and
    # would take `user` for a query parameter. The default alone makes it Airflow's user dependency.
    def guard(user=Depends(get_user)) -> None:  # noqa: B008
        if not get_auth_manager().is_authorized_dag(method="GET", user=user):
            raise HTTPException(status_code=403, detail="Forbidden: the dashboard needs read access to every DAG")

    return guard


def airflow_operator() -> Callable:
    """The caller's name, when the auth manager lets them edit DAGs (acknowledging is an operator's act)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user

    def operator(user=Depends(get_user)) -> str:  # noqa: B008
        if not get_auth_manager().is_authorized_dag(method="PUT", user=user):
            raise HTTPException(status_code=403, detail="Forbidden: acknowledging needs permission to edit DAGs")
        return user.get_name()

    return operator


def airflow_login_url(next_url: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=next_url)


def create_app(config_loader: Callable[[], PlatformConfig] = load_config, guard: Callable | None = None,
               login_url: Callable[[str], str] = airflow_login_url, operator: Callable | None = None) -> FastAPI:
    """``guard``: the dependency that checks the caller (default: ``airflow_guard()``); ``operator``: the
    one that names a caller allowed to acknowledge (default: ``airflow_operator()``)."""
    operator = operator or airflow_operator()
    app = FastAPI(title="SoleMate maintenance dashboard", dependencies=[Depends(guard or airflow_guard())],
                  docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(HTTPException)
    def refused(request: Request, exc: HTTPException) -> Response:
        """A person opening the page without a session gets a way in, not a JSON error."""
        if exc.status_code in (401, 403) and "text/html" in request.headers.get("accept", ""):
            message = ("Log in to Airflow first." if exc.status_code == 401
                       else "Your Airflow user may not read every DAG, which this dashboard needs.")
            here = f"{request.scope.get('root_path', '')}/"  # where the api-server mounted the app
            return HTMLResponse(f'<!doctype html><title>SoleMate maintenance</title><p>{message} '
                                f'<a href="{escape(login_url(here))}" target="_top">Log in</a></p>',
                                status_code=exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    def board() -> Dashboard:
        config = config_loader()
        return collect(reports_of(config), config.environment, datetime.now(UTC))

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return render(board())

    @app.get("/api/summary")
    def summary() -> dict:
        return board().as_json()

    @app.get("/incidents/{incident_id:path}", response_class=HTMLResponse)
    def incident_page(incident_id: str, request: Request) -> Response:
        from solemate_maintenance.dashboard.incidents import incident_html, store_of

        config = config_loader()
        record, _ = store_of(config).read()
        incident = record.incidents.get(incident_id)
        here = f"{request.scope.get('root_path', '')}/incidents/{quote(incident_id, safe='')}"
        return HTMLResponse(incident_html(config, incident_id, incident, action=f"{here}/acknowledge"),
                            status_code=200 if incident else 404)

    @app.post("/incidents/{incident_id:path}/acknowledge", response_class=HTMLResponse)
    def acknowledge_incident(incident_id: str, request: Request, who: str = Depends(operator)) -> Response:
        from solemate_maintenance.dashboard.incidents import acknowledge_and_tell

        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            raise HTTPException(status_code=403, detail="Forbidden: acknowledge from the dashboard's own page")
        status, page = acknowledge_and_tell(config_loader(), incident_id, who, datetime.now(UTC))
        return HTMLResponse(page, status_code=status)

    return app
