"""Catalog benchmark: generate a large Backstage-format catalog, ingest it, time reads.

Run from the repository root:

    .venv/bin/python bench/catalog.py                    # 100,000 entities
    .venv/bin/python bench/catalog.py --entities 10000   # a quick run

It prints, with the target next to each figure:

1. the synthetic catalog it wrote (a tree of location files, fixed seed);
2. the first ingestion on SQLite in a fresh temporary PAVEDROAD_HOME (entities,
   relations, seconds, entities/second, processing errors);
3. read latencies (p50/p95/max in ms over many repetitions, after warm-up), both
   calling ``CatalogReader`` directly and over HTTP against the real app served by
   uvicorn: a filtered page, following the next cursor, lookups by ref, facets,
   full-text search and the portal's catalog page (skipped if that route 404s); each
   in the steady state and right after a catalog write (nothing cached applies);
4. a second ingestion pass over the unchanged tree (what change hashing saves);
5. the machine and the exact command.

See docs/performance.md for the figures and what they mean.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEED = 20240611
PART_SIZE = 500
API_VERSION = "backstage.io/v1alpha1"

# Share of the catalog per kind; components take whatever rounding leaves over.
KIND_SHARES = [
    ("Group", 0.02), ("User", 0.10), ("API", 0.20),
    ("Resource", 0.06), ("System", 0.018), ("Domain", 0.002),
]

TARGETS = {
    "ingest_rate": 2000.0,  # entities per second, at least
    "list_p95": 50.0,       # ms
    "by_ref_p95": 5.0,      # ms
    "facets_p95": 150.0,    # ms
    "portal_p95": 200.0,    # ms
}

# -- vocabulary -------------------------------------------------------------------------

AREAS = [
    "payments", "checkout", "identity", "search", "catalog", "pricing", "logistics",
    "inventory", "messaging", "analytics", "billing", "fraud", "onboarding", "loyalty",
    "shipping", "returns", "recommendations", "notifications", "reporting", "ledger",
    "customer", "partner", "marketplace", "media", "storage", "observability", "platform",
    "security", "compliance", "mobile", "growth", "ads", "maps", "support", "warehouse",
    "orders", "subscriptions", "accounts", "tax", "data",
]
NOUNS = [
    "gateway", "engine", "service", "worker", "portal", "adapter", "scheduler", "store",
    "indexer", "router", "validator", "exporter", "importer", "broker", "tracker",
    "resolver", "aggregator", "monitor", "builder", "proxy",
]
RESOURCE_TYPES = [("database", "db"), ("s3-bucket", "bucket"), ("queue", "queue"),
                  ("cache", "cache"), ("topic", "topic")]
COMPONENT_TYPES = [("service", 0.5), ("website", 0.2), ("library", 0.3)]
LIFECYCLES = [("production", 0.7), ("experimental", 0.2), ("deprecated", 0.1)]
TAGS = ["python", "java", "go", "typescript", "kotlin", "rust", "grpc", "rest", "graphql",
        "kafka", "postgres", "redis", "pci", "gdpr", "tier-1", "tier-2", "tier-3",
        "internal", "public", "batch"]
FIRST = ["ada", "alan", "grace", "linus", "margaret", "dennis", "barbara", "ken", "radia",
         "edsger", "frances", "donald", "hedy", "john", "katherine", "tim", "sophie",
         "guido", "anita", "brian", "carol", "niklaus", "shafi", "leslie", "jean"]
LAST = ["lovelace", "turing", "hopper", "torvalds", "hamilton", "ritchie", "liskov",
        "thompson", "perlman", "dijkstra", "allen", "knuth", "lamarr", "backus", "johnson",
        "berners-lee", "wilson", "rossum", "borg", "kernighan", "shaw", "wirth",
        "goldwasser", "lamport", "sammet"]


def q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def weighted(rng: random.Random, choices: list[tuple[str, float]]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


# -- generation -------------------------------------------------------------------------

@dataclass
class Generated:
    root: Path
    counts: dict[str, int]
    files: int
    seconds: float
    bytes: int
    component_names: list[str] = field(default_factory=list)
    services: int = 0
    sample_term: str = "payments"


def kind_counts(total: int) -> dict[str, int]:
    counts = {kind: max(1, round(total * share)) for kind, share in KIND_SHARES}
    counts["Component"] = total - sum(counts.values())
    if counts["Component"] < 1:
        raise SystemExit("--entities is too small to hold every kind")
    return counts


def generate(out: Path, total: int) -> Generated:
    """Write the catalog as a tree of location files under ``out``; return what it holds."""
    started = time.perf_counter()
    rng = random.Random(SEED)
    counts = kind_counts(total)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    # Groups: one organization, departments under it, teams under departments, and
    # some sub-teams under teams. parent/children are kept consistent.
    n_groups = counts["Group"]
    n_departments = max(1, min(n_groups - 1, round(math.sqrt(n_groups))))
    groups: list[dict[str, Any]] = [{"name": "acme", "type": "organization", "parent": None,
                                     "area": "acme", "title": "ACME Corporation"}]
    for i in range(n_departments):
        area = AREAS[i % len(AREAS)]
        groups.append({"name": f"dept-{area}-{i:03d}", "type": "department", "parent": "acme",
                       "area": area, "title": f"{area.title()} Department {i}"})
    n_teams = n_groups - 1 - n_departments
    first_level = max(1, int(n_teams * 0.6))
    team_names: list[str] = []
    for i in range(n_teams):
        area = AREAS[rng.randrange(len(AREAS))]
        if i < first_level or not team_names:
            parent = groups[1 + rng.randrange(n_departments)]["name"] if n_departments else "acme"
        else:
            parent = team_names[rng.randrange(min(len(team_names), first_level))]
        name = f"team-{area}-{i:05d}"
        team_names.append(name)
        groups.append({"name": name, "type": "team", "parent": parent, "area": area,
                       "title": f"{area.title()} {NOUNS[i % len(NOUNS)].title()} Team {i}"})
    groups = groups[:n_groups]
    team_names = [g["name"] for g in groups if g["type"] == "team"] or [g["name"] for g in groups]
    children: dict[str, list[str]] = {g["name"]: [] for g in groups}
    for g in groups:
        if g["parent"]:
            children[g["parent"]].append(g["name"])
    departments = [g["name"] for g in groups if g["type"] == "department"] or ["acme"]

    # Domains, systems, resources, components, APIs: names and ownership first, so that
    # APIs can be owned by the component that provides them.
    domains = [(f"{AREAS[i % len(AREAS)]}-domain-{i:03d}", departments[i % len(departments)])
               for i in range(counts["Domain"])]
    systems = []
    for i in range(counts["System"]):
        area = AREAS[rng.randrange(len(AREAS))]
        systems.append((f"{area}-system-{i:04d}", rng.choice(team_names),
                        domains[rng.randrange(len(domains))][0], area))
    resources = []
    for i in range(counts["Resource"]):
        system = systems[rng.randrange(len(systems))]
        rtype, short = RESOURCE_TYPES[rng.randrange(len(RESOURCE_TYPES))]
        resources.append((f"{system[3]}-{short}-{i:05d}", rtype, system[1], system[0]))
    n_components, n_apis = counts["Component"], counts["API"]
    components = []
    libraries: list[str] = []
    services = 0
    for i in range(n_components):
        system = systems[rng.randrange(len(systems))]
        owner = system[1] if rng.random() < 0.8 else rng.choice(team_names)
        ctype = weighted(rng, COMPONENT_TYPES)
        services += ctype == "service"
        name = f"{system[3]}-{NOUNS[rng.randrange(len(NOUNS))]}-{i:05d}"
        components.append((name, ctype, owner, system[0], system[3]))
        if ctype == "library":
            libraries.append(name)
    component_names = [c[0] for c in components]
    apis = []
    for j in range(n_apis):
        provider = components[j % n_components]
        apis.append((f"{provider[0]}-api", provider[2], provider[3], provider[4]))

    files = 0
    written = 0
    kind_dirs: list[str] = []

    def write_kind(directory: str, documents: list[str]) -> None:
        nonlocal files, written
        folder = out / directory
        folder.mkdir()
        parts = []
        for start in range(0, len(documents), PART_SIZE):
            part = f"part-{start // PART_SIZE + 1:04d}.yaml"
            text = "".join(documents[start:start + PART_SIZE])
            (folder / part).write_text(text, encoding="utf-8")
            written += len(text)
            parts.append(part)
            files += 1
        index = location_doc(f"bench-{directory}", f"All {directory} of the benchmark catalog",
                             [f"./{p}" for p in parts])
        (folder / "index.yaml").write_text(index, encoding="utf-8")
        files += 1
        kind_dirs.append(f"./{directory}/index.yaml")

    # Groups.
    docs = []
    for g in groups:
        lines = ["---\n", f"apiVersion: {API_VERSION}\n", "kind: Group\n", "metadata:\n",
                 f"  name: {g['name']}\n", f"  title: {q(g['title'])}\n",
                 f"  description: {q(g['title'] + ' owns the ' + g['area'] + ' area.')}\n",
                 "spec:\n", f"  type: {g['type']}\n", "  profile:\n",
                 f"    displayName: {q(g['title'])}\n",
                 f"    email: {g['name']}@example.com\n"]
        if g["parent"]:
            lines.append(f"  parent: {g['parent']}\n")
        kids = children[g["name"]]
        listed = "".join(f"\n    - {c}" for c in kids) if kids else " []"
        lines.append(f"  children:{listed}\n")
        docs.append("".join(lines))
    write_kind("groups", docs)

    # Users: members of one or two teams.
    docs = []
    for i in range(counts["User"]):
        first, last = FIRST[rng.randrange(len(FIRST))], LAST[rng.randrange(len(LAST))]
        name = f"{first}.{last}-{i:05d}"
        member_of = rng.sample(team_names, k=min(len(team_names), 1 if rng.random() < 0.7 else 2))
        docs.append(
            f"---\napiVersion: {API_VERSION}\nkind: User\nmetadata:\n  name: {name}\n"
            f"spec:\n  profile:\n    displayName: {q(first.title() + ' ' + last.title())}\n"
            f"    email: {name}@example.com\n"
            f"    picture: https://avatars.example.com/{name}.png\n"
            "  memberOf:\n" + "".join(f"    - {m}\n" for m in member_of))
    write_kind("users", docs)

    # Domains and systems.
    docs = [f"---\napiVersion: {API_VERSION}\nkind: Domain\nmetadata:\n  name: {name}\n"
            f"  description: {q('Everything about ' + name.split('-')[0] + '.')}\n"
            f"spec:\n  owner: group:{owner}\n" for name, owner in domains]
    write_kind("domains", docs)
    docs = [f"---\napiVersion: {API_VERSION}\nkind: System\nmetadata:\n  name: {name}\n"
            f"  description: {q(f'The {area} system, number {i}.')}\n"
            f"  tags:\n    - {area if area in TAGS else 'internal'}\n"
            f"spec:\n  owner: group:{owner}\n  domain: {domain}\n"
            for i, (name, owner, domain, area) in enumerate(systems)]
    write_kind("systems", docs)

    # Resources.
    docs = [f"---\napiVersion: {API_VERSION}\nkind: Resource\nmetadata:\n  name: {name}\n"
            f"  description: {q(f'A {rtype} of {system}.')}\n"
            f"spec:\n  type: {rtype}\n  owner: group:{owner}\n  system: {system}\n"
            for name, rtype, owner, system in resources]
    write_kind("resources", docs)

    # Components.
    docs = []
    for i, (name, ctype, owner, system, area) in enumerate(components):
        lifecycle = weighted(rng, LIFECYCLES)
        tags = rng.sample(TAGS, k=rng.randint(1, 3))
        consumes = sorted({apis[rng.randrange(n_apis)][0] for _ in range(rng.randint(0, 3))})
        depends = []
        for _ in range(rng.randint(0, 2)):
            if libraries and rng.random() < 0.4:
                target = libraries[rng.randrange(len(libraries))]
                if target != name:
                    depends.append(f"component:{target}")
            else:
                depends.append(f"resource:{resources[rng.randrange(len(resources))][0]}")
        description = (f"The {area} {ctype} {name}: part of {system}, run by {owner}. "
                       f"It handles {area} {NOUNS[i % len(NOUNS)]} work "
                       f"for the {lifecycle} estate.")
        lines = ["---\n", f"apiVersion: {API_VERSION}\n", "kind: Component\n", "metadata:\n",
                 f"  name: {name}\n", f"  title: {q(name.replace('-', ' ').title())}\n",
                 f"  description: {q(description)}\n", "  annotations:\n",
                 f"    github.com/project-slug: acme/{name}\n",
                 "    backstage.io/techdocs-ref: dir:.\n"]
        if ctype == "service":
            lines.append(f"    pagerduty.com/service-id: P{i:06d}\n")
        lines.append("  tags:\n" + "".join(f"    - {t}\n" for t in tags))
        lines.append("  links:\n"
                     f"    - url: https://git.example.com/acme/{name}\n      title: Source\n")
        lines += ["spec:\n", f"  type: {ctype}\n", f"  lifecycle: {lifecycle}\n",
                  f"  owner: group:{owner}\n", f"  system: {system}\n",
                  f"  providesApis:\n    - {apis[i % n_apis][0]}\n"]
        if consumes:
            lines.append("  consumesApis:\n" + "".join(f"    - {a}\n" for a in consumes))
        if depends:
            lines.append("  dependsOn:\n" + "".join(f"    - {d}\n" for d in sorted(set(depends))))
        docs.append("".join(lines))
    write_kind("components", docs)

    # APIs, each with a short OpenAPI definition.
    docs = []
    for j, (name, owner, system, area) in enumerate(apis):
        noun = NOUNS[j % len(NOUNS)]
        collection = f"{noun}s"
        docs.append(
            f"---\napiVersion: {API_VERSION}\nkind: API\nmetadata:\n  name: {name}\n"
            f"  description: {q(f'The {area} {noun} API of {system}.')}\n"
            f"  tags:\n    - rest\n    - {area if area in TAGS else 'internal'}\n"
            f"spec:\n  type: openapi\n  lifecycle: {'production' if j % 5 else 'experimental'}\n"
            f"  owner: group:{owner}\n  system: {system}\n"
            "  definition: |\n"
            "    openapi: 3.0.3\n"
            "    info:\n"
            f"      title: {name}\n"
            f"      version: 1.{j % 10}.0\n"
            "    paths:\n"
            f"      /{collection}:\n"
            "        get:\n"
            f"          summary: List {collection}\n"
            "          responses:\n"
            "            '200':\n"
            "              description: A page of results\n"
            f"      /{collection}/{{id}}:\n"
            "        get:\n"
            f"          summary: Get one {noun}\n"
            "          parameters:\n"
            "            - {name: id, in: path, required: true, schema: {type: string}}\n"
            "          responses:\n"
            "            '200':\n"
            "              description: The item\n"
            "            '404':\n"
            "              description: Not found\n")
    write_kind("apis", docs)

    root = out / "all.yaml"
    root.write_text(location_doc("bench-catalog", "The benchmark catalog, all kinds", kind_dirs),
                    encoding="utf-8")
    files += 1
    return Generated(root=root, counts=counts, files=files,
                     seconds=time.perf_counter() - started, bytes=written,
                     component_names=component_names, services=services,
                     sample_term="checkout")


def location_doc(name: str, description: str, targets: list[str]) -> str:
    return (f"apiVersion: {API_VERSION}\nkind: Location\nmetadata:\n  name: {name}\n"
            f"  description: {q(description)}\nspec:\n  type: file\n  targets:\n"
            + "".join(f"    - {t}\n" for t in targets))


# -- measuring --------------------------------------------------------------------------

@dataclass
class Timing:
    label: str
    samples: list[float]
    target: float | None = None
    note: str = ""

    def pct(self, p: float) -> float:
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        return self.pct(0.95)

    @property
    def max(self) -> float:
        return max(self.samples)

    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "ok" if self.p95 < self.target else "MISSED"


def measure(label: str, call: Callable[[int], Any], reps: int, warmup: int,
            target: float | None = None, budget: float = 90.0, note: str = "",
            prepare: Callable[[], Any] | None = None) -> Timing:
    """Time ``call(i)`` ``reps`` times after ``warmup`` calls, in milliseconds;
    ``prepare()`` runs untimed before every call.

    Stops early (with at least 30 samples) when ``budget`` seconds are spent, so slow
    queries do not make the run take forever; the sample count is printed."""
    for i in range(warmup):
        if prepare:
            prepare()
        call(i)
    samples: list[float] = []
    spent = 0.0
    for i in range(reps):
        if prepare:
            prepare()
        started = time.perf_counter()
        call(warmup + i)
        elapsed = time.perf_counter() - started
        samples.append(elapsed * 1000)
        spent += elapsed
        if spent > budget and len(samples) >= 30:
            break
    timing = Timing(label, samples, target, note)
    print_timing(timing)
    return timing


def print_timing(t: Timing) -> None:
    target = f"< {t.target:g} ms" if t.target is not None else "—"
    print(f"  {t.label:<76} {t.p50:9.2f} {t.p95:9.2f} {t.max:9.2f} {len(t.samples):5d}"
          f"   {target:<10} {t.verdict()}{('  ' + t.note) if t.note else ''}", flush=True)


def timing_header() -> None:
    print(f"  {'':<76} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9} {'n':>5}   target")


class HttpServer:
    """The real app under uvicorn, in a thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="bench-uvicorn", daemon=True)

    def __enter__(self) -> HttpServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# -- the run ----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=100_000,
                        help="how many entities to generate (default 100000)")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for the generated tree and the database "
                             "(default: a temporary directory)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the generated tree and database after the run")
    parser.add_argument("--reps", type=int, default=200, help="repetitions per read (default 200)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the figures as JSON to this file")
    parser.add_argument("--warmup", type=int, default=10,
                        help="warm-up calls per read (default 10)")
    args = parser.parse_args(argv)

    command = " ".join([os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd())
                        else sys.executable, *sys.argv])
    created = args.out is None or not args.out.exists()
    base = args.out.resolve() if args.out else Path(tempfile.mkdtemp(prefix="pavedroad-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    home = base / "home"
    tree = base / "catalog"
    # Only ever remove what an earlier run of this benchmark made.
    for path, marker in ((tree, "all.yaml"), (home, "pavedroad.db")):
        if path.exists() and not (path / marker).exists() and any(path.iterdir()):
            parser.error(f"{path} exists and was not made by this benchmark; choose another --out")
    if home.exists():
        shutil.rmtree(home)
    # A fresh home, and nothing from the caller's environment choosing another database
    # or settings file.
    os.environ["PAVEDROAD_HOME"] = str(home)
    for name in ("PAVEDROAD_DATABASE_URL", "PAVEDROAD_CONFIG"):
        os.environ.pop(name, None)
    try:
        return run(args, base, home, tree, command)
    finally:
        if args.keep:
            print(f"\nKept {base} (tree in {tree}, database in {home})")
        elif created:
            shutil.rmtree(base, ignore_errors=True)
        else:
            shutil.rmtree(tree, ignore_errors=True)
            shutil.rmtree(home, ignore_errors=True)


def run(args: argparse.Namespace, base: Path, home: Path, tree: Path, command: str) -> int:
    print_machine(command)
    results: dict[str, Any] = {"entities_requested": args.entities}

    # 1. Generate.
    print(f"\n== 1. Generating {args.entities:,} entities (seed {SEED}) into {tree}")
    gen = generate(tree, args.entities)
    print("  " + ", ".join(f"{kind.lower()}s {count:,}" for kind, count in gen.counts.items()))
    print(f"  {gen.files} files ({gen.bytes / 1e6:.1f} MB of YAML, ~{PART_SIZE} entities per part) "
          f"in {gen.seconds:.2f} s ({args.entities / gen.seconds:,.0f} entities/s)")

    # 2. First ingestion.
    from sqlalchemy import String, func, select, text

    from pavedroad.catalog.ingestion import Ingester
    from pavedroad.catalog.models import EntityRow, RelationRow, SourceRow
    from pavedroad.catalog.queries import CatalogReader, EntityQuery, parse_filters
    from pavedroad.core.db import Database
    from pavedroad.settings import Settings

    settings = Settings(home=home, catalog={"refresh_interval_seconds": 3600})
    settings.ensure_home()
    db = Database(settings.resolved_database_url)
    db.migrate()
    ingester = Ingester(db, settings)
    print(f"\n== 2. First ingestion on SQLite ({settings.resolved_database_url})")
    progress_at = [time.perf_counter()]

    def progress(report: Any) -> None:
        if time.perf_counter() - progress_at[0] > 15:
            progress_at[0] = time.perf_counter()
            print(f"  ... {report.sources} sources, {report.written:,} entities written",
                  flush=True)

    started = time.perf_counter()
    location = ingester.add_location("file", str(gen.root))
    report = ingester.run_until_idle(progress=progress)
    ingest_seconds = time.perf_counter() - started
    with db.read_session() as session:
        entities = session.scalar(select(func.count()).select_from(EntityRow)) or 0
        relations = session.scalar(select(func.count()).select_from(RelationRow)) or 0
        search_rows = session.scalar(text("SELECT count(*) FROM catalog_search")) or 0
        sources = session.scalar(select(func.count()).select_from(SourceRow)) or 0
        source_errors = [e for errors in session.scalars(select(SourceRow.errors))
                         for e in errors or []]
        entity_errors = session.scalar(select(func.count()).select_from(EntityRow).where(
            func.length(func.cast(EntityRow.errors, String)) > 2)) or 0
    rate = entities / ingest_seconds
    errors = report.errors + len(source_errors) + entity_errors
    print(f"  entities          {entities:>12,}  ({args.entities:,} generated + "
          f"{entities - args.entities} Location entities)")
    print(f"  relations         {relations:>12,}")
    print(f"  search rows       {search_rows:>12,}")
    print(f"  sources (files)   {sources:>12,}")
    print(f"  seconds           {ingest_seconds:>12.2f}")
    print(f"  entities/second   {rate:>12,.0f}   target ≥ {TARGETS['ingest_rate']:,.0f}   "
          f"{'ok' if rate >= TARGETS['ingest_rate'] else 'MISSED'}")
    print(f"  processing errors {errors:>12,}   must be 0   {'ok' if errors == 0 else 'FAILED'}")
    for error in source_errors[:5]:
        print(f"    {error}")
    db_size = sum(f.stat().st_size for f in home.glob("pavedroad.db*"))
    print(f"  database size     {db_size / 1e6:>12.1f} MB")
    results.update(entities=entities, relations=relations, ingest_seconds=ingest_seconds,
                   ingest_rate=rate, errors=errors)

    # 3. Reads.
    reps, warmup = args.reps, args.warmup
    rng = random.Random(SEED + 1)
    names = gen.component_names
    random_names = [names[rng.randrange(len(names))] for _ in range(reps + warmup + 10)]
    list_filter = "kind=component,spec.type=service"
    facet_names = ["kind", "spec.type", "spec.lifecycle", "spec.owner"]
    term = gen.sample_term
    timings: list[Timing] = []

    def direct(fn: Callable[[CatalogReader, int], Any]) -> Callable[[int], Any]:
        def call(i: int) -> Any:
            with db.read_session() as session:
                return fn(CatalogReader(session), i)
        return call

    print(f"\n== 3. Reads (p50/p95/max over up to {reps} calls after {warmup} warm-up calls)")
    print("  [steady]: the catalog did not change between calls, so counts and facets the\n"
          "  catalog caches per generation may be served from cache; [after write]: a catalog\n"
          "  write (a new generation) precedes every call, so nothing cached applies.")
    with db.read_session() as session:
        first = CatalogReader(session).query(
            EntityQuery(filter=parse_filters([list_filter]), limit=20))
    print(f"  filter {list_filter}: totalItems {first.total:,} "
          f"(generated {gen.services:,} services), {len(first.items)} items on the page")
    if first.total != gen.services:
        print("  WARNING: totalItems does not match the generated services")

    # Cursor chains for "following the next cursor": page k of the filtered list.
    cursors: list[str] = []
    with db.read_session() as session:
        reader = CatalogReader(session)
        page = first
        while page.next_cursor and len(cursors) < reps + warmup:
            cursors.append(page.next_cursor)
            page = reader.query(EntityQuery(limit=20), page.next_cursor)

    def catalog_write() -> None:
        """What any catalog write does to readers: a new generation, so every count and
        facet cached for the previous one is dropped. Run before (not inside) the timed
        call, to measure the first read after a change."""
        with db.session() as session:
            session.execute(text("UPDATE catalog_state SET generation = generation + 1"))

    def both(label: str, call: Callable[[int], Any], target: float | None,
             note: str = "") -> None:
        """The steady state (catalog unchanged since the last read: cached counts and
        facets may answer) and the first read after a catalog write."""
        timings.append(measure(f"{label}  [steady]", call, reps, warmup, target, note=note))
        timings.append(measure(f"{label}  [after write]", call, reps, warmup, target, note=note,
                               prepare=catalog_write))

    def list_query(r: CatalogReader, i: int) -> Any:
        return r.query(EntityQuery(filter=parse_filters([list_filter]), limit=20))

    print("\n  -- CatalogReader, directly (one read session per call)")
    timing_header()
    both(f"list {list_filter} limit 20", direct(list_query), TARGETS["list_p95"])
    both("list next cursor (pages 2..)", direct(lambda r, i: r.query(
        EntityQuery(limit=20), cursors[i % len(cursors)])), TARGETS["list_p95"])
    timings.append(measure(
        "get_by_ref component:default/<random>", direct(lambda r, i: r.get_by_ref(
            f"component:default/{random_names[i]}")),
        reps, warmup, TARGETS["by_ref_p95"]))
    both("facets kind, spec.type, spec.lifecycle, spec.owner",
         direct(lambda r, i: r.facets(facet_names)), TARGETS["facets_p95"])
    both("facets kind", direct(lambda r, i: r.facets(["kind"])), TARGETS["facets_p95"])
    both(f"full text {term!r} limit 20", direct(lambda r, i: r.query(
        EntityQuery(full_text=term, limit=20))), None, note="(no target)")
    both(f"full text {term!r} + kind=component limit 20", direct(lambda r, i: r.query(
        EntityQuery(filter=parse_filters(["kind=component"]), full_text=term, limit=20))),
        None, note="(no target)")

    import httpx

    from pavedroad.app import create_app

    app = create_app(settings)
    print("\n  -- HTTP, the real app under uvicorn (client and server share this process)")
    portal_note = ""
    with HttpServer(app) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        def get(path: str, params: Any = None) -> httpx.Response:
            response = client.get(path, params=params)
            response.raise_for_status()
            return response

        body = get("/api/catalog/entities/by-query",
                   [("filter", list_filter), ("limit", "20")]).json()
        assert body["totalItems"] == first.total, body["totalItems"]
        http_cursors = []
        while body.get("pageInfo", {}).get("nextCursor") and len(http_cursors) < reps + warmup:
            http_cursors.append(body["pageInfo"]["nextCursor"])
            body = get("/api/catalog/entities/by-query",
                       [("cursor", http_cursors[-1]), ("limit", "20")]).json()
        timing_header()
        both(f"GET by-query?filter={list_filter}&limit=20",
             lambda i: get("/api/catalog/entities/by-query",
                           [("filter", list_filter), ("limit", "20")]),
             TARGETS["list_p95"])
        both("GET by-query?cursor=<next>&limit=20",
             lambda i: get("/api/catalog/entities/by-query",
                           [("cursor", http_cursors[i % len(http_cursors)]), ("limit", "20")]),
             TARGETS["list_p95"])
        timings.append(measure(
            "GET by-name/component/default/<random>",
            lambda i: get(f"/api/catalog/entities/by-name/component/default/{random_names[i]}"),
            reps, warmup, TARGETS["by_ref_p95"]))
        both("GET entity-facets (4 facets)",
             lambda i: get("/api/catalog/entity-facets", [("facet", f) for f in facet_names]),
             TARGETS["facets_p95"])
        both("GET entity-facets?facet=kind",
             lambda i: get("/api/catalog/entity-facets", [("facet", "kind")]),
             TARGETS["facets_p95"])
        both(f"GET by-query?fullTextFilterTerm={term}&limit=20",
             lambda i: get("/api/catalog/entities/by-query",
                           [("fullTextFilterTerm", term), ("limit", "20")]),
             None, note="(no target)")
        for path in ("/catalog", "/catalog?kind=component"):
            probe = client.get(path)
            if probe.status_code == 404:
                portal_note = f"GET {path}: 404, the portal catalog page does not exist; skipped"
                print(f"  {portal_note}")
                continue
            if probe.status_code >= 400:
                print(f"  GET {path}: HTTP {probe.status_code}; skipped")
                continue
            both(f"GET {path}", lambda i, p=path: get(p), TARGETS["portal_p95"])
    results["timings"] = {t.label: {"p50": t.p50, "p95": t.p95, "max": t.max, "n": len(t.samples),
                                    "target": t.target} for t in timings}

    # 4. Second pass over the unchanged tree.
    print("\n== 4. Refresh of the unchanged tree (request_refresh on the location, run_until_idle)")
    started = time.perf_counter()
    marked = ingester.request_refresh(location_id=location.id)
    again = ingester.run_until_idle()
    refresh_seconds = time.perf_counter() - started
    print(f"  sources re-read   {again.sources:>12,}  (marked {marked:,})")
    print(f"  entities written  {again.written:>12,}  (should be 0)")
    print(f"  unchanged         {again.unchanged:>12,}")
    print(f"  errors            {again.errors:>12,}")
    print(f"  seconds           {refresh_seconds:>12.2f}  "
          f"({entities / refresh_seconds:,.0f} entities/s)")
    results.update(refresh_seconds=refresh_seconds, refresh_written=again.written)

    # 4b. The same, as the scheduler does it: sources fall due but keep their content
    # hashes, so unchanged files are not even parsed.
    print("\n== 4b. Scheduled refresh of the unchanged tree (sources due, content hashes kept)")
    from sqlalchemy import update

    from pavedroad.core.timeutil import utcnow

    with db.session() as session:
        session.execute(update(SourceRow).where(SourceRow.location_id == location.id)
                        .values(next_refresh_at=utcnow()))
    started = time.perf_counter()
    scheduled = ingester.run_until_idle()
    scheduled_seconds = time.perf_counter() - started
    print(f"  sources re-read   {scheduled.sources:>12,}")
    print(f"  entities written  {scheduled.written:>12,}  (should be 0)")
    print(f"  seconds           {scheduled_seconds:>12.2f}")
    results.update(scheduled_seconds=scheduled_seconds, scheduled_written=scheduled.written)

    # Summary.
    print("\n== Summary against the targets")
    print(f"  ingestion            {rate:>10,.0f} entities/s   target ≥ 2,000      "
          f"{'ok' if rate >= TARGETS['ingest_rate'] else 'MISSED'}")
    for t in timings:
        if t.target is not None:
            print(f"  {t.label:<76} p95 {t.p95:8.2f} ms  target < {t.target:g} ms  {t.verdict()}")
    if portal_note:
        print(f"  portal catalog page: not measured ({portal_note})")
    print(f"  processing errors    {errors}")
    print(f"  load average at end: {load_average()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    db.dispose()
    return 0 if errors == 0 else 1


def print_machine(command: str) -> None:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
                break
    except OSError:
        pass
    import sqlalchemy

    print("== Machine")
    print(f"  {os.cpu_count()} cores ({cpu}){memory}")
    print(f"  {platform.system()} {platform.release()}, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}, SQLAlchemy {sqlalchemy.__version__}")
    print(f"  command: {command}")
    print(f"  code: {code_version()}")
    print(f"  load average at start: {load_average()}")


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1, 5, 15 min)"
    except OSError:
        return "unknown"


def code_version() -> str:
    """The commit the run measured, and whether src/ had uncommitted changes."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root,
                               check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"commit {commit}" + (" with uncommitted changes in src/" if dirty else "")


if __name__ == "__main__":
    sys.exit(main())
