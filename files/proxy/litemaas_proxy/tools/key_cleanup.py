"""Delete expired workshop keys through the proxy's management API, and mark them inactive in the portal.

Run in the proxy image (the ``litemaas-key-cleanup`` CronJob does this)::

    python -m litemaas_proxy.tools.key_cleanup [--dry-run] [--alias-prefix workshop-] [--grace-hours 0]

Settings come from arguments or the environment:

  PROXY_URL (or LITELLM_URL)      base URL of the proxy, e.g. ``http://litemaas-proxy:4000``
  LITELLM_MASTER_KEY              the master key (never printed)
  PORTAL_DATABASE_URL             optional: the portal database; when set, the portal's ``api_keys`` rows of
                                  deleted keys are marked inactive (with psycopg2 when importable, else asyncpg)
  KEY_CLEANUP_ALIAS_PREFIXES      optional, comma separated: only keys whose alias starts with one of these
  KEY_CLEANUP_METADATA_KEY        optional: only keys whose metadata has this key (e.g. ``workshop``)
  KEY_CLEANUP_GRACE_HOURS         keys are deleted this many hours after they expired (default 0)
  KEY_CLEANUP_MAX_AGE_DAYS        optional: also delete keys created more than this many days ago

Every key is read, page by page (``GET /key/list?return_full_object=true``), before anything is deleted,
so deleting never shifts a page that is still to be read. Deletion is ``POST /key/delete {"keys": [...]}``
in batches. The summary is one JSON object on stdout; the exit status is 1 when any call failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import datetime, timedelta, timezone
from typing import Iterable, Optional

from litemaas_proxy.tools._http import AdminClient, ApiError
from litemaas_proxy.values import parse_on_off, parse_timestamp

UTC = timezone.utc
LOG = logging.getLogger("litemaas_proxy.tools.key_cleanup")


# One timestamp parser for the whole proxy (values.py is standard library only, like this tool).
parse_time = parse_timestamp


def in_scope(key: dict, alias_prefixes: Iterable[str] = (), metadata_key: Optional[str] = None) -> bool:
    """Whether a key is a workshop key by the given rules (no rules: every key is in scope)."""
    prefixes = [p for p in alias_prefixes if p]
    if prefixes:
        alias = key.get("key_alias") or ""
        if not any(alias.startswith(p) for p in prefixes):
            return False
    if metadata_key:
        metadata = key.get("metadata") or {}
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except ValueError:
                metadata = {}
        if not isinstance(metadata, dict) or metadata_key not in metadata:
            return False
    return True


def why_delete(key: dict, now: datetime, grace: timedelta = timedelta(0), max_age: Optional[timedelta] = None) -> Optional[str]:
    """``"expired"``, ``"too_old"`` or None for a key object from ``/key/list``."""
    expires = parse_time(key.get("expires"))
    if expires is not None and expires + grace <= now:
        return "expired"
    if max_age is not None:
        created = parse_time(key.get("created_at"))
        if created is not None and created + max_age <= now:
            return "too_old"
    return None


def select_keys(keys: Iterable[dict], now: datetime, grace: timedelta = timedelta(0), max_age: Optional[timedelta] = None,
                alias_prefixes: Iterable[str] = (), metadata_key: Optional[str] = None) -> list:
    """The keys to delete: ``[{"token", "key_alias", "expires", "reason"}]`` in the order given, each token once."""
    prefixes = list(alias_prefixes)
    chosen, seen = [], set()
    for key in keys:
        token = key.get("token")
        if not token or token in seen or not in_scope(key, prefixes, metadata_key):
            continue
        reason = why_delete(key, now, grace, max_age)
        if reason:
            seen.add(token)
            chosen.append({"token": token, "key_alias": key.get("key_alias"), "expires": key.get("expires"), "reason": reason})
    return chosen


def batches(items: list, size: int) -> list:
    size = max(1, int(size))
    return [items[i:i + size] for i in range(0, len(items), size)]


PORTAL_COLUMNS_SQL = "SELECT column_name FROM information_schema.columns WHERE table_name = 'api_keys' AND table_schema = current_schema()"


def portal_update_sql(columns: set, with_aliases: bool) -> str:
    """The UPDATE that deactivates portal api_keys rows, for the columns this portal version has (placeholders %s)."""
    if not columns:
        raise RuntimeError("the portal database has no api_keys table")
    sets = ["is_active = false"]
    if "revoked_at" in columns:
        sets.append("revoked_at = COALESCE(revoked_at, NOW())")
    if "sync_status" in columns:
        sets.append("sync_status = 'synced'")
    if "sync_error" in columns:
        sets.append("sync_error = 'Key deleted by key cleanup (expired)'")
    if "updated_at" in columns:
        sets.append("updated_at = NOW()")
    match = ["key_hash = ANY(%s)"]
    if with_aliases and "litellm_key_alias" in columns:
        match.append("litellm_key_alias = ANY(%s)")
    return f"UPDATE api_keys SET {', '.join(sets)} WHERE is_active AND ({' OR '.join(match)})"  # noqa: S608


def portal_driver() -> Optional[str]:
    """psycopg2 when importable, else asyncpg (which the proxy image always has), else None."""
    for name in ("psycopg2", "asyncpg"):
        try:
            __import__(name)
        except ImportError:
            continue
        return name
    return None


def sync_portal(dsn: str, tokens: list, aliases: list, driver: Optional[str] = None) -> int:
    """Mark the portal's ``api_keys`` rows of deleted proxy keys inactive (matched by token hash or alias). Returns the row count.

    The portal stores ``key_hash`` = SHA-256 hex of the secret, which is the proxy's token."""
    driver = driver or portal_driver()
    if driver == "psycopg2":
        import psycopg2

        conn = psycopg2.connect(dsn)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(PORTAL_COLUMNS_SQL)
                columns = {row[0] for row in cur.fetchall()}
                sql = portal_update_sql(columns, bool(aliases))
                params = [list(tokens)] + ([list(aliases)] if sql.count("%s") == 2 else [])
                cur.execute(sql, params)
                return cur.rowcount
        finally:
            conn.close()
    if driver == "asyncpg":
        import asyncio

        import asyncpg

        async def go() -> int:
            conn = await asyncpg.connect(dsn)
            try:
                columns = {row[0] for row in await conn.fetch(PORTAL_COLUMNS_SQL)}
                sql = portal_update_sql(columns, bool(aliases))
                count = sql.count("%s")
                for i in range(1, count + 1):
                    sql = sql.replace("%s", f"${i}::text[]", 1)
                params = [list(tokens)] + ([list(aliases)] if count == 2 else [])
                status = await conn.execute(sql, *params)
                return int(status.split()[-1])
            finally:
                await conn.close()

        return asyncio.run(go())
    raise RuntimeError("neither psycopg2 nor asyncpg is installed")


def run(client: AdminClient, now: Optional[datetime] = None, dry_run: bool = False, grace: timedelta = timedelta(0),
        max_age: Optional[timedelta] = None, alias_prefixes: Iterable[str] = (), metadata_key: Optional[str] = None,
        batch_size: int = 100, page_size: int = 100, portal_dsn: Optional[str] = None) -> dict:
    """One cleanup pass; returns the summary (never raises for API errors: they are counted in ``errors``)."""
    now = now or datetime.now(UTC)
    summary = {"dry_run": dry_run, "scanned": 0, "selected": 0, "deleted": 0, "portal_deactivated": 0,
               "portal_sync": "disabled", "errors": [], "keys": []}
    try:
        keys = client.list_all_keys(page_size=page_size)
    except ApiError as exc:
        summary["errors"].append(str(exc))
        return summary
    summary["scanned"] = len(keys)
    chosen = select_keys(keys, now, grace, max_age, alias_prefixes, metadata_key)
    summary["selected"] = len(chosen)
    summary["keys"] = [{"key_alias": k["key_alias"], "expires": k["expires"], "reason": k["reason"]} for k in chosen]
    if dry_run:
        summary["portal_sync"] = "dry-run"
        return summary
    deleted = []
    for group in batches(chosen, batch_size):
        try:
            client.delete_keys([k["token"] for k in group])
            deleted.extend(group)
        except ApiError as exc:
            summary["errors"].append(str(exc))
    summary["deleted"] = len(deleted)
    if portal_dsn:
        if portal_driver() is None:
            summary["portal_sync"] = "skipped: neither psycopg2 nor asyncpg is installed"
        elif deleted:
            try:
                summary["portal_deactivated"] = sync_portal(portal_dsn, [k["token"] for k in deleted], [k["key_alias"] for k in deleted if k["key_alias"]])
                summary["portal_sync"] = "done"
            except Exception as exc:  # any driver error: reported, not fatal for the deletions already made
                summary["errors"].append(f"portal sync failed: {type(exc).__name__}: {str(exc).strip()}")
                summary["portal_sync"] = "failed"
        else:
            summary["portal_sync"] = "nothing to do"
    return summary


def _env_float(name: str, default: Optional[float]) -> Optional[float]:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m litemaas_proxy.tools.key_cleanup", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--url", default=env.get("PROXY_URL") or env.get("LITELLM_URL") or "http://127.0.0.1:4000", help="proxy base URL")
    parser.add_argument("--dry-run", action="store_true", default=parse_on_off(env.get("KEY_CLEANUP_DRY_RUN"), False, "KEY_CLEANUP_DRY_RUN"),
                        help="list what would be deleted, change nothing")
    parser.add_argument("--alias-prefix", action="append", default=None, help="only keys whose alias starts with this (repeatable)")
    parser.add_argument("--metadata-key", default=env.get("KEY_CLEANUP_METADATA_KEY") or None, help="only keys whose metadata has this key")
    parser.add_argument("--grace-hours", type=float, default=_env_float("KEY_CLEANUP_GRACE_HOURS", 0.0), help="delete this long after expiry")
    parser.add_argument("--max-age-days", type=float, default=_env_float("KEY_CLEANUP_MAX_AGE_DAYS", None),
                        help="also delete keys created more than this many days ago")
    parser.add_argument("--batch-size", type=int, default=int(env.get("KEY_CLEANUP_BATCH_SIZE", "100")), help="keys per /key/delete call")
    parser.add_argument("--page-size", type=int, default=100, help="keys per /key/list page (at most 100)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP call")
    parser.add_argument("--insecure", action="store_true", help="do not verify the proxy's TLS certificate")
    parser.add_argument("--ca-path", default=env.get("PROXY_CA_PATH") or None, help="CA bundle for the proxy's TLS certificate")
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    master_key = os.environ.get("LITELLM_MASTER_KEY") or os.environ.get("PROXY_MASTER_KEY")
    if not master_key:
        print(json.dumps({"errors": ["LITELLM_MASTER_KEY is not set"]}))
        return 2
    prefixes = args.alias_prefix
    if prefixes is None:
        prefixes = [p.strip() for p in os.environ.get("KEY_CLEANUP_ALIAS_PREFIXES", "").split(",") if p.strip()]
    client = AdminClient(args.url, master_key, timeout=args.timeout, verify=not args.insecure, ca_path=args.ca_path)
    summary = run(
        client,
        dry_run=args.dry_run,
        grace=timedelta(hours=args.grace_hours or 0.0),
        max_age=timedelta(days=args.max_age_days) if args.max_age_days else None,
        alias_prefixes=prefixes,
        metadata_key=args.metadata_key,
        batch_size=args.batch_size,
        page_size=args.page_size,
        portal_dsn=os.environ.get("PORTAL_DATABASE_URL") or None,
    )
    LOG.info("scanned %d keys, selected %d, deleted %d, portal rows deactivated %d, errors %d", summary["scanned"], summary["selected"],
             summary["deleted"], summary["portal_deactivated"], len(summary["errors"]))
    print(json.dumps(summary, sort_keys=True))
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
