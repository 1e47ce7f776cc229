"""Lays out a run's jobs as a picture the run page draws in SVG.

Jobs stand in columns by dependency depth, left to right: a job that needs nothing is
in the first column, a job that needs others one column right of the deepest of them.
The jobs of one matrix share a frame, one box per combination stacked inside it; an
edge goes from a needed job (or matrix frame) to the job that needs it. Within a column
jobs keep the pipeline's order, moved towards the jobs they need so edges cross less.
Only coordinates and texts are computed here; the template writes the SVG, so every
text goes through the template's escaping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pavedroad.pipelines.models import JobRow

NODE_WIDTH = 200
NODE_HEIGHT = 44
NODE_GAP = 8  # between the boxes of one matrix
GROUP_GAP = 22  # between jobs of one column
COLUMN_GAP = 64
FRAME_PAD = 8
FRAME_CAPTION = 20
MARGIN = 10
MAX_LABEL_CHARS = 24
MAX_COLUMNS = 60

STATUS_SYMBOLS = {
    "succeeded": "✓",
    "failed": "✗",
    "running": "●",
    "queued": "○",
    "waiting": "○",
    "cancelled": "⊘",
    "skipped": "\u2013",
}


@dataclass
class GraphNode:
    job_id: str  # the job row's id
    label: str
    title: str
    status: str
    detail: str
    url: str
    x: float
    y: float
    selected: bool = False
    width: float = NODE_WIDTH
    height: float = NODE_HEIGHT

    @property
    def symbol(self) -> str:
        return STATUS_SYMBOLS.get(self.status, "?")


@dataclass
class GraphFrame:
    """The frame around a matrix job's boxes."""

    label: str
    x: float
    y: float
    width: float
    height: float


@dataclass
class GraphEdge:
    path: str
    status: str  # the needed job's (group's) status, so finished paths stand out


@dataclass
class JobGraph:
    nodes: list[GraphNode] = field(default_factory=list)
    frames: list[GraphFrame] = field(default_factory=list)
    edges: list[GraphEdge] = field(default_factory=list)
    width: float = 0
    height: float = 0


@dataclass
class _Group:
    """The jobs of one pipeline job id (several for a matrix)."""

    job_id: str
    order: int
    jobs: list[JobRow]
    needs: list[str]
    depth: int = 0
    row: float = 0.0  # position in its column, for ordering the next column
    x: float = 0.0
    y: float = 0.0
    height: float = 0.0

    @property
    def matrix(self) -> bool:
        return len(self.jobs) > 1 or any(job.matrix for job in self.jobs)

    @property
    def status(self) -> str:
        return _group_status([job.status for job in self.jobs])


def _group_status(statuses: Sequence[str]) -> str:
    for status in ("failed", "cancelled", "running", "queued", "waiting"):
        if status in statuses:
            return status
    return "skipped" if statuses and all(s == "skipped" for s in statuses) else "succeeded"


def _short(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _depths(groups: Mapping[str, _Group]) -> None:
    """Each group's column: one past its deepest need (needs on jobs that are not in the
    run are ignored; a cycle, which a valid pipeline cannot have, stops at MAX_COLUMNS)."""
    resolving: set[str] = set()

    def depth(job_id: str) -> int:
        group = groups[job_id]
        if job_id in resolving:
            return 0
        resolving.add(job_id)
        known = [need for need in group.needs if need in groups and need != job_id]
        group.depth = min(MAX_COLUMNS, 1 + max((depth(n) for n in known), default=-1))
        resolving.discard(job_id)
        return group.depth

    for job_id in groups:
        depth(job_id)


def layout_jobs(
    jobs: Sequence[JobRow],
    job_order: Sequence[str],
    *,
    url: Callable[[JobRow], str],
    detail: Callable[[JobRow], str],
) -> JobGraph:
    """The graph of ``jobs``; ``job_order`` is the pipeline's job ids in file order."""
    order = {job_id: index for index, job_id in enumerate(job_order)}
    groups: dict[str, _Group] = {}
    for job in jobs:
        group = groups.get(job.job_id)
        if group is None:
            group = _Group(job.job_id, order.get(job.job_id, len(order)), [], list(job.needs))
            groups[job.job_id] = group
        group.jobs.append(job)
    if not groups:
        return JobGraph()
    _depths(groups)
    columns: dict[int, list[_Group]] = {}
    for group in sorted(groups.values(), key=lambda g: (g.order, g.job_id)):
        columns.setdefault(group.depth, []).append(group)

    graph = JobGraph()
    bottom = 0.0
    for depth in sorted(columns):
        column = columns[depth]
        if depth:
            column.sort(key=lambda g: (_barycentre(g, groups), g.order, g.job_id))
        x = MARGIN + depth * (NODE_WIDTH + 2 * FRAME_PAD + COLUMN_GAP)
        y = float(MARGIN)
        for row, group in enumerate(column):
            group.row = row
            y = _place(graph, group, x, y, url, detail) + GROUP_GAP
        bottom = max(bottom, y - GROUP_GAP)
    for group in groups.values():
        for need in group.needs:
            if need in groups and need != group.job_id:
                graph.edges.append(_edge(groups[need], group))
    graph.width = MARGIN + (max(columns) + 1) * (NODE_WIDTH + 2 * FRAME_PAD + COLUMN_GAP)
    graph.width -= COLUMN_GAP
    graph.height = bottom + MARGIN
    return graph


def _barycentre(group: _Group, groups: Mapping[str, _Group]) -> float:
    rows = [groups[need].row for need in group.needs if need in groups]
    return sum(rows) / len(rows) if rows else 0.0


def _place(
    graph: JobGraph,
    group: _Group,
    x: float,
    y: float,
    url: Callable[[JobRow], str],
    detail: Callable[[JobRow], str],
) -> float:
    """Put the group's boxes (in a frame for a matrix) at ``x, y``; returns its bottom."""
    group.x, group.y = x, y
    top = y + (FRAME_PAD + FRAME_CAPTION if group.matrix else 0)
    inner_x = x + FRAME_PAD
    for index, job in enumerate(sorted(group.jobs, key=lambda j: j.key)):
        label = job.name
        if group.matrix and job.matrix:
            label = ", ".join(str(value) for value in job.matrix.values())
        graph.nodes.append(
            GraphNode(
                job_id=job.id,
                label=_short(label),
                title=f"{job.name}: {job.status}",
                status=job.status,
                detail=detail(job),
                url=url(job),
                x=inner_x,
                y=top + index * (NODE_HEIGHT + NODE_GAP),
            )
        )
    count = len(group.jobs)
    boxes = count * NODE_HEIGHT + (count - 1) * NODE_GAP
    if group.matrix:
        group.height = boxes + 2 * FRAME_PAD + FRAME_CAPTION
        caption = group.jobs[0].spec.get("name") if isinstance(group.jobs[0].spec, dict) else None
        graph.frames.append(
            GraphFrame(
                _short(str(caption or group.job_id), MAX_LABEL_CHARS + 4),
                x,
                y,
                NODE_WIDTH + 2 * FRAME_PAD,
                group.height,
            )
        )
    else:
        group.height = boxes
    return y + group.height


def _edge(source: _Group, target: _Group) -> GraphEdge:
    right = source.x + (NODE_WIDTH + 2 * FRAME_PAD if source.matrix else FRAME_PAD + NODE_WIDTH)
    left = target.x + (0 if target.matrix else FRAME_PAD)
    y1 = source.y + source.height / 2
    y2 = target.y + target.height / 2
    bend = (left - right) / 2
    path = (
        f"M{right:.1f},{y1:.1f} C{right + bend:.1f},{y1:.1f} "
        f"{left - bend:.1f},{y2:.1f} {left:.1f},{y2:.1f}"
    )
    return GraphEdge(path, source.status)
