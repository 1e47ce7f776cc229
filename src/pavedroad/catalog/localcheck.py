"""Checking descriptor files on disk, exactly as ingestion would, without a server."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pavedroad.catalog.processing import (
    EntityValidationError,
    ProcessingContext,
    build_pipeline,
    build_readers,
)
from pavedroad.core.errors import ProblemError
from pavedroad.core.safeyaml import YamlError, YamlLimits, load_documents
from pavedroad.settings import Settings


@dataclass
class FileResult:
    path: Path
    entities: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "entities": self.entities, "errors": self.errors}


def check_files(paths: list[Path], settings: Settings | None = None) -> list[FileResult]:
    settings = settings or Settings()
    pipeline = build_pipeline(settings)
    reader = build_readers(settings)["file"]
    limits = YamlLimits(**settings.yaml.model_dump())
    results = []
    for path in paths:
        result = FileResult(path)
        results.append(result)
        absolute = str(path.resolve())
        try:
            documents = load_documents(reader.read(absolute), str(path), limits)
        except (YamlError, ProblemError) as exc:
            result.errors.append({"line": getattr(exc, "line", None), "message": exc.detail})
            continue

        def read_relative(relative: str, base: str = absolute) -> bytes:
            return reader.read(reader.resolve_placeholder(base, relative))

        context = ProcessingContext("file", absolute, read_relative, settings)
        for document in documents:
            if document.error:
                result.errors.append(
                    {"line": document.error.line, "message": document.error.message}
                )
                continue
            try:
                processed = pipeline.process(document.data, context)
            except EntityValidationError as exc:
                for message in exc.errors:
                    result.errors.append(
                        {"line": document.line, "ref": exc.ref, "message": message}
                    )
                continue
            except ProblemError as exc:
                result.errors.append({"line": document.line, "message": exc.detail})
                continue
            result.entities.append({"line": document.line, "ref": processed.ref.key})
    return results
