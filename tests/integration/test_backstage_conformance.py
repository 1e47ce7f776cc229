"""Conformance with Backstage's own example catalog.

The examples live beside the project (``PAVEDROAD_CONFORMANCE_DIR``, set by ``.ci/run``),
never in it. Ingesting ``all.yaml`` and ``acme-corp.yaml`` must produce the entities and
relations Backstage's catalog produces from the same files with its default settings: the
seven ``inpixon`` APIs whose ``$text`` points at hosts no reader allows fail, as Backstage's
reader allowlist makes them fail, and nothing else does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from integration_support import (
    MANAGED_BY,
    MANAGED_BY_ORIGIN,
    get,
    location_errors,
    refs,
    relations,
)


@pytest.fixture(scope="module")
def examples() -> Path:
    configured = os.environ.get("PAVEDROAD_CONFORMANCE_DIR")
    if not configured:
        pytest.skip("PAVEDROAD_CONFORMANCE_DIR is not set")
    folder = Path(configured).resolve() / "backstage-examples"
    if not (folder / "all.yaml").is_file() or not (folder / "acme-corp.yaml").is_file():
        pytest.fail(
            f"PAVEDROAD_CONFORMANCE_DIR={configured} has no backstage-examples/all.yaml "
            "and acme-corp.yaml",
            pytrace=False,
        )
    return folder


@pytest.fixture
def ingested(catalog, examples):
    all_location, _ = catalog.register_location("file", str(examples / "all.yaml"))
    acme_location, _ = catalog.register_location("file", str(examples / "acme-corp.yaml"))
    return all_location.id, acme_location.id


# The inpixon APIs of all-apis.yaml, with the host their $text names.
FAILING_APIS = {
    "analytics": "api.inpixondev.com",
    "awarecoreinsight": "api.inpixondev.com",
    "awareproducerservice": "api.inpixondev.com",
    "inpixonmappingsdk": "mapping-dev-jacs.inpixondev.com",
    "mapanalytics": "api.inpixondev.com",
    "odpanalytics": "api.inpixondev.com",
    "wokplaceanalytics": "login.inpixon.com",
}

FROM_ALL = {
    "component:default/artist-lookup",
    "component:default/petstore",
    "component:default/playback-order",
    "component:default/podcast-api",
    "component:default/queue-proxy",
    "component:default/searcher",
    "component:default/playback-sdk",
    "component:default/www-artist",
    "component:default/shuffle-api",
    "component:default/wayback-archive",
    "component:default/wayback-archive-ingestion",
    "component:default/wayback-archive-storage",
    "component:default/wayback-search",
    "domain:default/artists",
    "domain:default/audio",
    "domain:default/playback",
    "system:default/artist-engagement-portal",
    "system:default/audio-playback",
    "system:default/podcast",
    "resource:default/artists-db",
    "location:default/example-all",
    "location:default/example-apis",
    "location:default/example-components",
    "location:default/example-domains",
    "location:default/example-resources",
    "location:default/example-systems",
}

FROM_ACME = {
    "location:default/acme-corp",
    "location:default/example-groups",
    "group:default/acme-corp",
    "group:default/infrastructure",
    "group:default/boxoffice",
    "group:default/backstage",
    "group:default/team-a",
    "group:default/team-b",
    "group:default/team-c",
    "group:default/team-d",
    "group:default/team-e",
    "user:default/breanna.davison",
    "user:default/janelle.dawe",
    "user:default/nigel.manning",
    "user:default/guest",
    "user:development/guest",
    "user:default/amelia.park",
    "user:default/colette.brock",
    "user:default/jenny.doe",
    "user:default/jonathon.page",
    "user:default/justine.barrow",
    "user:default/calum.leavy",
    "user:default/frank.tiernan",
    "user:default/peadar.macmahon",
    "user:default/sarah.gilroy",
    "user:default/tara.macgovern",
    "user:default/eva.macdowell",
    "user:default/lucy.sheehan",
}

# Stitched relations, as Backstage returns them: sorted by type then targetRef, lower-case.
STITCHED = {
    "component:default/petstore": [
        ("ownedBy", "group:default/team-c"),
        ("providesApi", "api:default/hello-world"),
        ("providesApi", "api:default/petstore"),
        ("providesApi", "api:default/streetlights"),
    ],
    "component:default/wayback-archive": [
        ("hasPart", "component:default/wayback-archive-ingestion"),
        ("hasPart", "component:default/wayback-archive-storage"),
        ("ownedBy", "group:default/team-a"),
        ("providesApi", "api:default/wayback-archive"),
    ],
    "component:default/wayback-search": [
        ("consumesApi", "api:default/wayback-archive"),
        ("ownedBy", "group:default/team-a"),
        ("providesApi", "api:default/wayback-search"),
    ],
    "component:default/wayback-archive-ingestion": [
        ("ownedBy", "group:default/team-d"),
        ("partOf", "component:default/wayback-archive"),
    ],
    "component:default/playback-order": [("ownedBy", "group:default/guest")],
    "component:default/searcher": [("ownedBy", "user:default/guest")],
    "group:default/team-a": [
        ("childOf", "group:default/backstage"),
        ("hasMember", "user:default/breanna.davison"),
        ("hasMember", "user:default/guest"),
        ("hasMember", "user:default/janelle.dawe"),
        ("hasMember", "user:default/nigel.manning"),
        ("hasMember", "user:development/guest"),
        ("ownerOf", "component:default/artist-lookup"),
        ("ownerOf", "component:default/wayback-archive"),
        ("ownerOf", "component:default/wayback-archive-storage"),
        ("ownerOf", "component:default/wayback-search"),
        ("ownerOf", "component:default/www-artist"),
        ("ownerOf", "domain:default/artists"),
        ("ownerOf", "resource:default/artists-db"),
        ("ownerOf", "system:default/artist-engagement-portal"),
    ],
    "group:default/infrastructure": [
        ("childOf", "group:default/acme-corp"),
        ("parentOf", "group:default/backstage"),
        ("parentOf", "group:default/boxoffice"),
    ],
    "group:default/acme-corp": [
        ("ownerOf", "domain:default/audio"),
        ("parentOf", "group:default/infrastructure"),
    ],
    "user:default/guest": [
        ("memberOf", "group:default/team-a"),
        ("ownerOf", "component:default/searcher"),
        ("ownerOf", "component:default/shuffle-api"),
    ],
    "user:development/guest": [("memberOf", "group:default/team-a")],
    "user:default/frank.tiernan": [
        ("memberOf", "group:default/team-c"),
        ("ownerOf", "domain:default/playback"),
    ],
    "domain:default/playback": [
        ("hasPart", "system:default/audio-playback"),
        ("hasPart", "system:default/podcast"),
        ("ownedBy", "user:default/frank.tiernan"),
    ],
    "domain:default/artists": [
        ("hasPart", "system:default/artist-engagement-portal"),
        ("ownedBy", "group:default/team-a"),
        ("partOf", "domain:default/audio"),
    ],
    "domain:default/audio": [
        ("hasPart", "domain:default/artists"),
        ("ownedBy", "group:default/acme-corp"),
    ],
    "system:default/audio-playback": [
        ("hasPart", "component:default/playback-sdk"),
        ("hasPart", "component:default/shuffle-api"),
        ("ownedBy", "group:default/team-c"),
        ("partOf", "domain:default/playback"),
    ],
    "system:default/artist-engagement-portal": [
        ("hasPart", "component:default/artist-lookup"),
        ("hasPart", "component:default/www-artist"),
        ("hasPart", "resource:default/artists-db"),
        ("ownedBy", "group:default/team-a"),
        ("partOf", "domain:default/artists"),
    ],
    "resource:default/artists-db": [
        ("ownedBy", "group:default/team-a"),
        ("partOf", "system:default/artist-engagement-portal"),
    ],
}


def test_entities_backstage_produces(catalog, ingested):
    all_id, acme_id = ingested
    all_refs = refs(catalog, all_id)
    acme_refs = refs(catalog, acme_id)

    generated_all = {r for r in all_refs if r.startswith("location:default/generated-")}
    generated_acme = {r for r in acme_refs if r.startswith("location:default/generated-")}
    assert len(generated_all) == len(generated_acme) == 1
    assert all_refs - generated_all == FROM_ALL
    assert acme_refs - generated_acme == FROM_ACME
    assert not any(r.startswith("api:") for r in refs(catalog))
    # Files the two roots do not reference stay out.
    for absent in (
        "component:default/dream11-svc",
        "component:default/demo-service",
        "component:alternative/different-namespace",
        "component:default/analyticsapi",
        "api:default/petstore",
        "group:default/inpixon",
    ):
        assert get(catalog, absent) is None, absent


def test_apis_with_text_on_external_hosts_fail_like_the_reader_allowlist(catalog, ingested):
    all_id, acme_id = ingested
    errors = location_errors(catalog, all_id)
    by_ref = {e["entityRef"]: e for e in errors}
    assert set(by_ref) == {f"api:default/{name}" for name in FAILING_APIS}
    assert len(errors) == len(FAILING_APIS)
    for name, host in FAILING_APIS.items():
        message = by_ref[f"api:default/{name}"]["message"]
        assert host in message and "not in the allowed hosts" in message
    assert location_errors(catalog, acme_id) == []
    # Nothing refers to the owner of those APIs once they failed.
    with catalog.reader() as reader:
        assert reader.relations_of(["group:default/inpixon"]) == {}


def test_relations_stitched_like_backstage(catalog, ingested):
    for ref, expected in STITCHED.items():
        assert relations(get(catalog, ref)) == expected, ref


def test_relations_to_missing_entities_are_kept(catalog, ingested):
    # SOURCE.md: petstore's and wayback's APIs are not loaded through all.yaml.
    with catalog.reader() as reader:
        dangling = reader.relations_of(
            ["api:default/petstore", "api:default/wayback-archive", "group:default/guest"]
        )
    assert dangling["api:default/petstore"] == [
        {"type": "apiProvidedBy", "targetRef": "component:default/petstore"}
    ]
    assert dangling["api:default/wayback-archive"] == [
        {"type": "apiConsumedBy", "targetRef": "component:default/wayback-search"},
        {"type": "apiProvidedBy", "targetRef": "component:default/wayback-archive"},
    ]
    assert dangling["group:default/guest"] == [
        {"type": "ownerOf", "targetRef": "component:default/playback-order"}
    ]


def test_managed_by_annotations_match_backstage(catalog, ingested, examples):
    petstore = get(catalog, "component:default/petstore")["metadata"]["annotations"]
    assert petstore[MANAGED_BY] == f"file:{examples / 'components' / 'petstore-component.yaml'}"
    assert petstore[MANAGED_BY_ORIGIN] == f"file:{examples / 'all.yaml'}"
    guest = get(catalog, "user:development/guest")["metadata"]["annotations"]
    assert guest[MANAGED_BY] == f"file:{examples / 'acme' / 'team-a-group.yaml'}"
    assert guest[MANAGED_BY_ORIGIN] == f"file:{examples / 'acme-corp.yaml'}"
    example_apis = get(catalog, "location:default/example-apis")
    assert (
        example_apis["metadata"]["annotations"][MANAGED_BY] == f"file:{examples / 'all-apis.yaml'}"
    )


def test_invalid_component_is_rejected_naming_metadata_name(catalog, examples):
    path = examples / "components" / "invalid-component.yaml"
    location, _ = catalog.register_location("file", str(path))
    assert [r for r in refs(catalog) if not r.startswith("location:")] == []
    errors = location_errors(catalog, location.id)
    assert len(errors) == 1
    assert '"metadata.name" is not valid' in errors[0]["message"]
    assert "invalid component" in errors[0]["message"]
    assert errors[0]["line"] == 1


def test_file_without_final_newline_and_other_namespace(catalog, examples):
    catalog.register_location("file", str(examples / "components" / "different-namespace.yaml"))
    entity = get(catalog, "component:alternative/different-namespace")
    assert entity is not None
    assert relations(entity) == [("ownedBy", "group:default/team-a")]
