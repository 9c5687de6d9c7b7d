"""Spend and usage reports (LiteLLM's spend_management_endpoints): /spend/logs, /user/daily/activity.

Any key may read them; a key that is not an admin's sees only its own rows (or its user's: routes.scope)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from aiohttp import web

from litemaas_proxy.api.common import MAX_PAGE, check_range, int_query, parse_date, pool, proxy_of, query_filters
from litemaas_proxy.api.routes import KEY, KEY_ROW, USER_ROW, Route, scope_filters
from litemaas_proxy.auth import hash_if_needed
from litemaas_proxy.errors import bad_request, json_response
from litemaas_proxy.queries import spend as q

UTC = timezone.utc


def _midnight(day) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


async def spend_logs(request: web.Request) -> web.Response:
    filters = []
    api_key = request.query.get("api_key")
    if api_key:
        filters.append(("api_key", hash_if_needed(api_key)))
    for qname, col in q.LOG_FILTERS:
        if request.query.get(qname):
            filters.append((col, request.query[qname]))
    filters += scope_filters(request, "api_key", '"user"')
    start = parse_date(request.query.get("start_date"), "start_date")
    end = parse_date(request.query.get("end_date"), "end_date")
    check_range(start, end)
    since = _midnight(start) if start else None
    until = _midnight(end + timedelta(days=1)) if end else None
    p = pool(proxy_of(request))
    summarize = request.query.get("summarize", "true").lower() != "false"
    if start and end and summarize:
        rows = await q.daily_by_key(p, filters, since, until)
        days: dict = {}
        d = start
        while d <= end:
            days[d] = {"startTime": d.isoformat(), "spend": 0.0, "users": {}, "models": {}}
            d += timedelta(days=1)
        for r in rows:
            item = days.setdefault(r["day"], {"startTime": r["day"].isoformat(), "spend": 0.0, "users": {}, "models": {}})
            item["spend"] += r["spend"]
            if r["user"]:
                item["users"][r["user"]] = item["users"].get(r["user"], 0.0) + r["spend"]
            if r["model_group"]:
                item["models"][r["model_group"]] = item["models"].get(r["model_group"], 0.0) + r["spend"]
            item[r["api_key"]] = item.get(r["api_key"], 0.0) + r["spend"]
        return json_response(list(days.values()))
    rows = await q.latest(p, filters, since, until)
    return json_response([dict(r) for r in rows])


def empty_metrics() -> dict:
    return {"spend": 0.0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "api_requests": 0, "successful_requests": 0,
            "failed_requests": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}


def add_metrics(m: dict, r) -> None:
    m["spend"] += r["spend"]
    m["prompt_tokens"] += r["prompt_tokens"]
    m["completion_tokens"] += r["completion_tokens"]
    m["total_tokens"] += r["total_tokens"]
    m["api_requests"] += r["api_requests"]
    m["successful_requests"] += r["successful_requests"]
    m["failed_requests"] += r["failed_requests"]


async def daily_activity(request: web.Request) -> web.Response:
    start = parse_date(request.query.get("start_date"), "start_date")
    end = parse_date(request.query.get("end_date"), "end_date")
    if not start or not end:
        raise bad_request("Please provide start_date and end_date", "start_date")
    check_range(start, end)
    page = int_query(request, "page", 1, 1, MAX_PAGE)
    page_size = int_query(request, "page_size", 50, 1, 1000)
    filters = query_filters(request, q.ACTIVITY_FILTERS, "api_key") + scope_filters(request, "s.api_key", 's."user"')
    rows = await q.activity(pool(proxy_of(request)), filters, _midnight(start), _midnight(end + timedelta(days=1)))
    by_day: dict = {}
    total = empty_metrics()
    for r in rows:
        add_metrics(total, r)
        day = by_day.setdefault(r["day"], {"date": r["day"].isoformat(), "metrics": empty_metrics(),
                                           "breakdown": {"models": {}, "model_groups": {}, "api_keys": {}, "providers": {}, "mcp_servers": {},
                                                         "entities": {}}})
        add_metrics(day["metrics"], r)
        bd = day["breakdown"]
        model = r["model_group"] or ""
        meta = {"key_alias": r["key_alias"], "team_id": r["team_id"]}
        for section, name in (("models", model), ("model_groups", model), ("providers", r["custom_llm_provider"] or "openai")):
            item = bd[section].setdefault(name, {"metrics": empty_metrics(), "metadata": {}, "api_key_breakdown": {}})
            add_metrics(item["metrics"], r)
            kb = item["api_key_breakdown"].setdefault(r["api_key"], {"metrics": empty_metrics(), "metadata": meta})
            add_metrics(kb["metrics"], r)
        kitem = bd["api_keys"].setdefault(r["api_key"], {"metrics": empty_metrics(), "metadata": meta})
        add_metrics(kitem["metrics"], r)
    days = [by_day[d] for d in sorted(by_day)]
    total_pages = max(1, math.ceil(len(days) / page_size))
    results = days[(page - 1) * page_size: page * page_size]
    metadata = {"total_spend": total["spend"], "total_prompt_tokens": total["prompt_tokens"], "total_completion_tokens": total["completion_tokens"],
                "total_tokens": total["total_tokens"], "total_api_requests": total["api_requests"],
                "total_successful_requests": total["successful_requests"], "total_failed_requests": total["failed_requests"],
                "total_cache_read_input_tokens": 0, "total_cache_creation_input_tokens": 0,
                "page": page, "total_pages": total_pages, "has_more": page < total_pages}
    return json_response({"results": results, "metadata": metadata})


ROUTES = [
    Route("GET", "/spend/logs", spend_logs, KEY, targets=(("api_key", KEY_ROW), ("user_id", USER_ROW)), listing=True),
    Route("GET", "/user/daily/activity", daily_activity, KEY, targets=(("api_key", KEY_ROW), ("user_id", USER_ROW)), listing=True),
]
