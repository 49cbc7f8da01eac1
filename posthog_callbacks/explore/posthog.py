"""Fetch ``$ai_*`` events from PostHog's query API (HogQL) for ``explore``."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import schema as S

__all__ = ["app_host", "query_events"]

log = logging.getLogger(__name__)

_INGEST_TO_APP = {
    "https://us.i.posthog.com": "https://us.posthog.com",
    "https://eu.i.posthog.com": "https://eu.posthog.com",
    "https://app.posthog.com": "https://us.posthog.com",
}


def app_host(host: str | None) -> str:
    """The API host for queries: ingestion hosts (``us.i.posthog.com``) map to the app host."""
    value = (host or os.environ.get("POSTHOG_HOST") or "https://us.posthog.com").rstrip("/")
    return _INGEST_TO_APP.get(value, value)


def _since_iso(since: datetime | timedelta | str | None) -> str | None:
    if since is None:
        return None
    if isinstance(since, timedelta):
        since = datetime.now(timezone.utc) - since
    if isinstance(since, datetime):
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        return since.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return str(since)


def build_query(
    *,
    since: datetime | timedelta | str | None,
    trace_id: str | None,
    session_id: str | None,
    distinct_id: str | None,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    """The HogQLQuery body; user values go through ``values`` placeholders, never the SQL."""
    where = ["event IN (" + ", ".join(f"'{e}'" for e in S.ALL_EVENTS) + ")"]
    values: dict[str, Any] = {}
    since_iso = _since_iso(since)
    if since_iso is not None:
        where.append("timestamp >= toDateTime({since})")
        values["since"] = since_iso
    if trace_id is not None:
        where.append(f"properties.{S.TRACE_ID} = {{trace_id}}")
        values["trace_id"] = str(trace_id)
    if session_id is not None:
        where.append(f"properties.{S.SESSION_ID} = {{session_id}}")
        values["session_id"] = str(session_id)
    if distinct_id is not None:
        where.append("distinct_id = {distinct_id}")
        values["distinct_id"] = str(distinct_id)
    sql = (
        "SELECT uuid, event, timestamp, distinct_id, properties FROM events WHERE "
        + " AND ".join(where)
        + f" ORDER BY timestamp ASC, uuid ASC LIMIT {int(limit)} OFFSET {int(offset)}"
    )
    return {
        "query": {"kind": "HogQLQuery", "query": sql, "values": values},
        "name": "posthog-callbacks explore",
    }


def _rows_to_events(payload: dict[str, Any]) -> list[dict[str, Any]]:
    columns = payload.get("columns") or ["uuid", "event", "timestamp", "distinct_id", "properties"]
    return [dict(zip(columns, row, strict=False)) for row in payload.get("results") or []]


def query_events(
    *,
    project_id: str | int | None,
    personal_api_key: str | None,
    host: str | None,
    since: datetime | timedelta | str | None,
    trace_id: str | None,
    session_id: str | None,
    distinct_id: str | None,
    max_events: int,
    page_size: int,
    timeout: float,
    session: Any = None,
) -> list[dict[str, Any]]:
    """POST HogQL queries (paged) and return event dicts in the sink's shape.

    Raises:
        ValueError: No project id or personal API key.
        RuntimeError: PostHog answered with an error.
    """
    key = personal_api_key or os.environ.get("POSTHOG_PERSONAL_API_KEY")
    project = project_id or os.environ.get("POSTHOG_PROJECT_ID")
    if not key:
        raise ValueError(
            "querying PostHog needs a personal API key with query:read: pass "
            "personal_api_key=... or set POSTHOG_PERSONAL_API_KEY (the project "
            "key phc_... cannot read)"
        )
    if not project:
        raise ValueError(
            "querying PostHog needs the project id: pass project_id=... or set POSTHOG_PROJECT_ID"
        )
    import requests

    http = session or requests.Session()
    url = f"{app_host(host)}/api/projects/{project}/query/"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    events: list[dict[str, Any]] = []
    offset = 0
    while len(events) < max_events:
        limit = min(page_size, max_events - len(events))
        body = build_query(
            since=since,
            trace_id=trace_id,
            session_id=session_id,
            distinct_id=distinct_id,
            limit=limit,
            offset=offset,
        )
        response = http.post(url, json=body, headers=headers, timeout=timeout)
        if response.status_code >= 400:
            detail = ""
            try:
                detail = str(response.json().get("detail") or "")
            except ValueError:
                detail = response.text[:200]
            raise RuntimeError(
                f"PostHog query API answered HTTP {response.status_code}"
                + (f": {detail}" if detail else "")
            )
        payload = response.json()
        if payload.get("error"):
            raise RuntimeError(f"PostHog query failed: {payload['error']}")
        page = _rows_to_events(payload)
        events.extend(page)
        offset += len(page)
        if not payload.get("hasMore") or not page:
            break
    return events
