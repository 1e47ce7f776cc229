"""Alembic environment: runs migrations on the engine the platform already made."""

from alembic import context

from pavedroad.core.db import Base
from pavedroad.core.models import import_all_models

import_all_models()
config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
