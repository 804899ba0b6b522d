"""The maintenance dashboard as an Airflow 3 plugin: the api-server mounts its FastAPI app under
/solemate and the UI lists it under Browse (an external view shown inside the UI)."""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/solemate"


class _BuiltWhenAsked:
    """The app is built when the api-server reads ``fastapi_apps``, not when a scheduler, worker or task
    process loads the plugin: Airflow's API security module costs them over a second to import."""

    def __init__(self) -> None:
        self.apps: list[dict[str, Any]] | None = None

    def __get__(self, instance: Any, owner: type) -> list[dict[str, Any]]:
        if self.apps is None:
            from solemate_maintenance.dashboard.app import create_app

            self.apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "SoleMate maintenance dashboard"}]
        return self.apps


class SoleMateDashboardPlugin(AirflowPlugin):
    name = "solemate_dashboard"
    fastapi_apps = _BuiltWhenAsked()
    external_views = [{"name": "Maintenance dashboard", "href": f"{URL_PREFIX}/", "destination": "nav",
                       "category": "browse", "url_route": "solemate-maintenance"}]
