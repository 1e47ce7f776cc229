"""Imports every domain's models so Alembic and ``create_all`` see the whole schema."""


def import_all_models() -> None:
    import pavedroad.catalog.models
    import pavedroad.core.audit
    import pavedroad.core.events
    import pavedroad.environments.models
    import pavedroad.git.models
    import pavedroad.identity.device
    import pavedroad.identity.models
    import pavedroad.identity.sessions
    import pavedroad.pipelines.models
    import pavedroad.scaffolder.models
    import pavedroad.secrets.models  # noqa: F401
