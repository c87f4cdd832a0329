"""The history store's command line: `stepline history upgrade` (the release step that
migrates the database) and what `stepline dev` does with it before starting its children."""

from __future__ import annotations

import sys
from pathlib import Path

from app.config import Settings
from app.errors import HistoryUnavailable
from app.history import history_url, migrate, open_settings_history
from app.history.store import SQLITE_FILE


def upgrade(settings: Settings, *, sql: bool = False) -> int:
    """Migrate the history store to this version's schema; with `sql`, print the SQL only."""
    url = history_url(settings)
    if sql:
        print(migrate.upgrade_sql(url), end="")
        return 0
    history = open_settings_history(settings)
    try:
        history.upgrade()
    except (HistoryUnavailable, OSError, ValueError) as exc:
        print(f"stepline history upgrade: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the driver's own errors (unreachable server, bad password)
        print(f"stepline history upgrade: {history.url}: {exc}", file=sys.stderr)
        return 1
    finally:
        history.close()
    print(f"history store {history.url} is at revision {migrate.head()}")
    return _queue_unarchived(settings)


def _queue_unarchived(settings: Settings) -> int:
    """Hand the archiver the finished runs and events a version without a history store left
    in Redis (once; later calls find them queued)."""
    from app.state.archive import ArchiveStore
    from app.state.client import store_for

    store = store_for(settings)
    try:
        runs, events = ArchiveStore(store).queue_unarchived()
    except Exception as exc:  # Redis down: the database part is done; say what is left
        print(
            f"stepline history upgrade: could not reach Redis ({exc}); "
            "run it again to hand older finished runs to the archiver",
            file=sys.stderr,
        )
        return 1
    finally:
        store.close()
    if runs or events:
        print(f"queued for the archiver: {runs} finished runs and {events} events already in Redis")
    return 0


def prepare_for_dev(settings: Settings) -> tuple[str, str]:
    """Migrate the history store `dev` will use; returns its URL (for the children, absolute)
    and the banner line saying where it is. Raises on an unusable store."""
    url = history_url(settings)
    history = open_settings_history(settings)
    try:
        history.upgrade()
        shown = history.url
    finally:
        history.close()
    if settings.history_url:
        return url, f"History: {shown} (STEPLINE_HISTORY_URL)"
    data_dir = Path(settings.data_dir).expanduser().resolve()
    return url, f"Data directory: {data_dir} (run history in {SQLITE_FILE}; STEPLINE_DATA_DIR)"
