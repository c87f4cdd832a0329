"""Celery adapters: one thin task per kind of job, each taking a job id (and, for a start job,
its function id: `Job.function_id`) and nothing else.

    celery -A tasks worker -Q stepline        runs jobs (start, edge, sleep, pause_timeout,
                                              event, flow control, archive; `timers`: many
                                              due timers' jobs in one message)
    celery -A tasks worker -Q stepline-sdk    the same tasks, for runs of SDK apps' functions
                                              (app.queue routes them: STEPLINE_SDK_QUEUE)
    celery -A tasks beat       releases due timers, lost jobs and cron runs (tasks.beat)

Tasks are `acks_late` and `reject_on_worker_lost`, and every one is safe to run twice: the
job's Redis lease decides who works on it, and a finished job leaves a tombstone.
"""

from __future__ import annotations

from celery import Celery, signals

from app.config import Settings, load_or_exit
from app.engine import Engine
from app.models import JobKind
from app.queue import QUEUE_NAME, TIMERS_TASK, broker_options, task_name
from tasks import hooks
from tasks.broker import SteplineCelery

_engine: Engine | None = None


def engine() -> Engine:
    """This process's engine, built on first use (after the prefork fork, never before)."""
    global _engine
    if _engine is None:
        _engine = Engine.create(Settings.from_env(), sender=celery_app, inline=True)
    return _engine


@signals.worker_process_init.connect
def _reset_after_fork(**_: object) -> None:
    global _engine
    _engine = None


def make_celery(settings: Settings) -> Celery:
    app = SteplineCelery("stepline", set_as_current=False)
    app.conf.update(
        broker_options(settings),
        worker_consumer="tasks.broker:Consumer",
        # Running jobs keep running when the broker connection drops: their leases (Redis)
        # decide whether their results count, not the Celery message.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_default_queue=QUEUE_NAME,
        # Each pool process has its next message in the worker already when it finishes one
        # (with acks_late and prefetch 1 it waited for the ack, then the fetch: a gap per
        # message that left the pool idle a third of the time under a flood of wakes). The
        # fair pool hands a held message to whichever process is free.
        worker_prefetch_multiplier=2,
        worker_concurrency=settings.worker_concurrency,
        beat_scheduler="tasks.beat:TickScheduler",
        worker_hijack_root_logger=False,
    )
    for kind in JobKind:
        _register(app, kind)

    @app.task(name=TIMERS_TASK, acks_late=True, reject_on_worker_lost=True)
    def timers(job_ids: list[str]) -> dict[str, str]:
        """Many due timers in one message (`app.queue`), run in one loop, each under its own
        lease; the registry is read once for all of them."""
        stepline = engine()
        with stepline.registry.pinned():
            return stepline.jobs.handle_each(job_ids)

    return app


def _register(app: Celery, kind: JobKind) -> None:
    def run(job_id: str, function_id: str = "", limits: str = "") -> str:
        """`function_id`: a start job's function (`Job.function_id`), when its message has it;
        `limits`: its flow-control values (`Job.limits`, JSON), when its function has any."""
        return engine().jobs.work(job_id, function_id, limits)

    run.__name__ = kind.value
    app.task(name=task_name(kind), acks_late=True, reject_on_worker_lost=True)(run)


settings = load_or_exit()
celery_app = make_celery(settings)
app = celery_app
hooks.connect(settings)
