"""Alembic environment of the history store (`app.history.migrate` builds the config in code;
there is no alembic.ini). The caller hands over an open connection in
`config.attributes["connection"]`; offline mode (`stepline history upgrade --sql`) renders the
SQL for the configured URL instead."""

from __future__ import annotations

from alembic import context

from app.history.schema import metadata

config = context.config

if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
