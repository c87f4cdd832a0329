"""In-process functions the browser tests (and the README screenshot) run.

Side effects count under Redis keys `ui:` (plain redis-py, as user code would), so a test can
tell whether a replay really skipped the steps it reused.
"""

from __future__ import annotations

import datetime
import os
import time

import redis

import app.sdk as inngest

client = inngest.Inngest(app_id="shop")
_redis = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))


def count(name: str) -> int:
    return int(_redis.incr(f"ui:count:{name}"))


@client.create_function(
    fn_id="onboard-user",
    name="Onboard user",
    trigger=inngest.TriggerEvent(event="shop/user.signed_up"),
    retries=2,
    concurrency=[inngest.Concurrency(limit=10, key="event.data.email")],
)
def onboard_user(ctx: inngest.ContextSync) -> dict[str, object]:
    email = str(ctx.event.data.get("email", "ada@example.com"))
    pause = float(ctx.event.data.get("pause", 0.15))

    ctx.logger.info("onboarding %s", email)

    def load_profile() -> dict[str, object]:
        time.sleep(pause)
        ctx.logger.info("profile loaded from CRM: plan=pro seats=5")
        return {"email": email, "plan": "pro", "seats": 5}

    def score_lead() -> int:
        time.sleep(pause * 2)
        ctx.logger.warning("lead score model is stale (trained 41 days ago)")
        return 87

    def send_welcome() -> dict[str, object]:
        time.sleep(pause)
        return {"template": "welcome-v2", "to": email, "queued": True}

    profile = ctx.step.run("load-profile", load_profile)
    score = ctx.step.run("score-lead", score_lead)
    ctx.step.sleep("short-breather", datetime.timedelta(milliseconds=300))
    mail = ctx.step.run("send-welcome", send_welcome)
    return {"profile": profile, "score": score, "mail": mail}


@client.create_function(
    fn_id="trial-reminder",
    name="Trial reminder",
    trigger=inngest.TriggerEvent(event="shop/trial.started"),
)
def trial_reminder(ctx: inngest.ContextSync) -> str:
    ctx.step.run("record-trial", lambda: count("trial"))
    ctx.step.sleep("wait-a-week", datetime.timedelta(days=7))
    ctx.step.run("send-reminder", lambda: "reminded")
    return "done"


@client.create_function(
    fn_id="charge-order",
    name="Charge order",
    trigger=inngest.TriggerEvent(event="shop/order.placed"),
    retries=0,
)
def charge_order(ctx: inngest.ContextSync) -> dict[str, object]:
    order = str(ctx.event.data.get("order_id", "o-1"))

    def load_cart() -> dict[str, object]:
        count(f"load-cart:{order}")
        return {"order_id": order, "total": 4200}

    def charge_card() -> str:
        count(f"charge:{order}")
        if not _redis.exists(f"ui:card-ok:{order}"):
            raise RuntimeError("card declined")
        return "ch_123"

    cart = ctx.step.run("load-cart", load_cart)
    charge = ctx.step.run("charge-card", charge_card)
    return {"cart": cart, "charge": charge}


@client.create_function(
    fn_id="nightly-report",
    name="Nightly report",
    trigger=inngest.TriggerCron(cron="0 3 * * *"),
)
def nightly_report(ctx: inngest.ContextSync) -> str:
    return "ok"


@client.create_function(
    fn_id="greet-vip",
    name="Greet VIP",
    trigger=inngest.TriggerEvent(event="shop/vip.visit", expression="event.data.vip == true"),
    rate_limit=inngest.RateLimit(
        limit=1, period=datetime.timedelta(minutes=1), key="event.data.user"
    ),
)
def greet_vip(ctx: inngest.ContextSync) -> str:
    return f"hello {ctx.event.data.get('user')}"


def _hold(tag: str) -> str:
    """User code that blocks until the test sets `ui:go:<tag>` (at most a minute)."""
    deadline = time.monotonic() + 60
    while not _redis.exists(f"ui:go:{tag}") and time.monotonic() < deadline:
        time.sleep(0.05)
    return tag


@client.create_function(
    fn_id="sync-account",
    name="Sync account",
    trigger=inngest.TriggerEvent(event="shop/account.sync"),
    concurrency=[inngest.Concurrency(limit=1, key="event.data.account")],
)
def sync_account(ctx: inngest.ContextSync) -> str:
    tag = str(ctx.event.data.get("tag", "x"))
    return ctx.step.run("sync", lambda: _hold(tag))
