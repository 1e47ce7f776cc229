"""The hosted git layer's built-in plugin: loading it registers the layer's permissions;
its hooks read catalog ``url`` locations that name files in hosted repositories, and
mark those locations due when their repository receives a push."""

from __future__ import annotations

import logging
from typing import Any

import pavedroad.git.permissions  # noqa: F401
from pavedroad.catalog.processing import LocationReader
from pavedroad.core.hookspecs import hookimpl
from pavedroad.git.catalog_reader import HostedRepoUrlReader, refresh_locations_reading
from pavedroad.git.service import GIT_PUSHED
from pavedroad.settings import Settings

log = logging.getLogger("pavedroad.git")


@hookimpl
def pavedroad_catalog_readers(settings: Settings) -> list[LocationReader]:
    return [HostedRepoUrlReader(settings)]


@hookimpl
def pavedroad_event(event: Any, db: Any) -> None:
    """A push to a hosted repository: the catalog re-reads the files it holds at the
    next background round rather than after the refresh interval."""
    if event.type != GIT_PUSHED or event.data.get("source") != "hosted":
        return
    try:
        marked = refresh_locations_reading(db, str(event.data.get("repository", "")))
    except Exception:  # the push is recorded; the interval refresh still comes
        log.exception("could not mark the catalog locations of %s due", event.subject)
        return
    if marked:
        log.info("%s was pushed: %d catalog source(s) due now", event.subject, marked)
