"""Deploy-time checks of Redis, and the `release` phase of a deployment.

    check_redis(store, settings)   Findings: Redis >= 6.2, Lua runs, every script of lua/ loads,
                                   `maxmemory-policy` is `noeviction` (an error in production, a
                                   warning in dev), AOF on (a warning when off)
    release(settings, out)         `stepline release` (the Procfile's `release:`): the checks,
                                   then the in-process functions published and the apps of
                                   STEPLINE_APP_URLS synced once; exit 1 on any error
    at_start(settings, process)    every web, worker and beat process at start: the eviction
                                   policy only; logs a warning in dev, raises `StartRefused` in
                                   production

Leases, job records and tombstones are plain keys: a Redis that evicts keys under memory
pressure loses running work silently, hence the policy check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import IO, Literal

from app.config import Settings, masked_url
from app.errors import SteplineError
from app.state.client import store_for
from app.state.server import ServerInfo, load_scripts, lua_works, server_info
from app.state.store import Store

log = logging.getLogger("stepline.release")

MIN_REDIS = (6, 2)
POLICY = "noeviction"


class StartRefused(SteplineError):
    """Production mode and a Redis that may evict keys: the process does not start."""

    code = "start_refused"


@dataclass(frozen=True)
class Finding:
    level: Literal["ok", "warning", "error"]
    check: str
    message: str


def policy_finding(info: ServerInfo, settings: Settings) -> Finding:
    policy = info.maxmemory_policy or "unknown"
    if policy == POLICY:
        return Finding("ok", "maxmemory-policy", POLICY)
    level: Literal["warning", "error"] = "error" if settings.production else "warning"
    return Finding(
        level,
        "maxmemory-policy",
        f"is {policy}, not {POLICY}: under memory pressure Redis may evict leases, jobs and "
        f"run state. Set `maxmemory-policy {POLICY}` (managed Redis: in the provider's "
        "settings)" + ("" if settings.production else "; production mode refuses to start"),
    )


def check_redis(store: Store, settings: Settings) -> list[Finding]:
    info = server_info(store)
    findings = []
    if info.version_tuple >= MIN_REDIS:
        findings.append(Finding("ok", "version", f"Redis {info.version}"))
    else:
        wanted = ".".join(map(str, MIN_REDIS))
        findings.append(
            Finding("error", "version", f"Redis {info.version or '?'}; {wanted} or newer needed")
        )
    failed = {name: error for name, error in load_scripts(store).items() if error}
    if not lua_works(store):
        findings.append(Finding("error", "lua", "EVAL is refused: Stepline needs Lua scripting"))
    elif failed:
        detail = "; ".join(f"{name}: {error}" for name, error in sorted(failed.items()))
        findings.append(Finding("error", "lua", f"scripts this server refuses: {detail}"))
    else:
        findings.append(Finding("ok", "lua", "every script loads"))
    findings.append(policy_finding(info, settings))
    if info.aof_enabled:
        findings.append(Finding("ok", "aof", "appendonly yes"))
    else:
        what = "appendonly is off" if info.aof_enabled is False else "AOF status unknown"
        lost = ": a Redis restart loses what happened since its last snapshot"
        findings.append(Finding("warning", "aof", what + lost))
    return findings


def release(settings: Settings, out: IO[str]) -> int:
    """The checks, then the registry brought up to date. 0 if nothing is an error."""
    store = store_for(settings)
    try:
        findings = check_redis(store, settings)
    except Exception as exc:
        print(f"error redis: cannot reach {masked_url(settings.redis_url)}: {exc}", file=out)
        return 1
    finally:
        store.close()
    for finding in findings:
        print(f"{finding.level:<7} {finding.check}: {finding.message}", file=out)
    if any(finding.level == "error" for finding in findings):
        print("release failed: fix the errors above", file=out)
        return 1
    from app.engine import Engine
    from app.history import commands
    from app.sync import sync_app

    if commands.upgrade(settings) != 0:  # the history database at this version's schema
        print("release failed: the history store could not be migrated", file=out)
        return 1
    engine = Engine.create(settings)  # publishes the in-process functions
    print(f"ok      functions: {len(engine.local.configs())} in-process", file=out)
    for url in settings.app_urls:
        try:
            reply = sync_app(url, settings)
            print(f"ok      sync {url}: modified={reply.get('modified')}", file=out)
        except Exception as exc:  # beat keeps retrying; a deploy must not wait for an app
            print(f"warning sync {url}: {exc} (beat retries)", file=out)
    engine.store.close()
    return 0


def at_start(settings: Settings, process: str) -> None:
    """Called once by each web, worker and beat process before it serves."""
    store = store_for(settings)
    try:
        finding = policy_finding(server_info(store), settings)
    except Exception as exc:  # Redis may come up later; the process retries its connections
        log.warning("%s: cannot check Redis at start: %s", process, exc)
        return
    finally:
        store.close()
    if finding.level == "error":
        raise StartRefused(f"{process} refuses to start: Redis maxmemory-policy {finding.message}")
    if finding.level == "warning":
        log.warning("%s: Redis maxmemory-policy %s", process, finding.message)
