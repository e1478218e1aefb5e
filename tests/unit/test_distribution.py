"""Manifests, indexes and configs: parsing refuses what would not work later,
building is deterministic, platforms are chosen like Docker."""

import json

import pytest

from dockyard.engine import distribution as dist
from dockyard.engine.content import digest_of
from dockyard.errors import InvalidParameter

DIFF = "sha256:" + "1" * 64
BLOB = "sha256:" + "2" * 64
CONFIG = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": [DIFF]}}).encode()


def manifest(**over):
    doc = {"schemaVersion": 2, "mediaType": dist.DOCKER_MANIFEST,
           "config": {"mediaType": dist.DOCKER_CONFIG, "digest": digest_of(CONFIG), "size": len(CONFIG)},
           "layers": [{"mediaType": dist.DOCKER_LAYER_GZIP, "digest": BLOB, "size": 10}]}
    doc.update(over)
    return json.dumps(doc).encode()


def test_docker_manifest_parses_with_descriptors():
    data = manifest()
    m = dist.parse_manifest(data, dist.DOCKER_MANIFEST)
    assert m.media_type == dist.DOCKER_MANIFEST and m.digest == digest_of(data)
    assert m.config.digest == digest_of(CONFIG) and m.config.size == len(CONFIG)
    assert [(d.digest, d.size) for d in m.layers] == [(BLOB, 10)]
    assert dist.layer_compression(m.layers[0].media_type) == "gzip"


def test_oci_manifest_without_media_type_is_told_by_shape():
    doc = json.loads(manifest())
    del doc["mediaType"]
    doc["config"]["mediaType"] = dist.OCI_CONFIG
    doc["layers"][0]["mediaType"] = dist.OCI_LAYER_TAR
    assert dist.parse_manifest(json.dumps(doc).encode()).media_type == dist.OCI_MANIFEST


@pytest.mark.parametrize("data,media_type,why", [
    (b"not json", None, "not JSON"),
    (b"[1]", None, "not a JSON object"),
    (manifest(schemaVersion=1), None, "schema 1"),
    (manifest(), "application/vnd.docker.distribution.manifest.v1+prettyjws", "schema 1"),
    (manifest(), dist.OCI_MANIFEST, "served as"),
    (manifest(mediaType="text/plain"), None, "unknown media type"),
    (manifest(schemaVersion=3), None, "schemaVersion"),
    (manifest(layers={}), None, "layers must be a list"),
    (manifest(layers=[{"mediaType": dist.DOCKER_LAYER_GZIP, "digest": "sha256:abc", "size": 1}]), None, "digest"),
    (manifest(layers=[{"mediaType": dist.DOCKER_LAYER_GZIP, "digest": BLOB, "size": -1}]), None, "size"),
    (manifest(layers=[{"mediaType": dist.DOCKER_LAYER_GZIP, "digest": BLOB, "size": True}]), None, "size"),
    (manifest(layers=[{"mediaType": "application/x-foo", "digest": BLOB, "size": 1}]), None, "layer media type"),
    (manifest(config={"mediaType": "application/json", "digest": BLOB, "size": 1}), None, "config media type"),
    (manifest(config=None), None, "descriptor"),
])
def test_bad_manifests_are_refused_naming_the_field(data, media_type, why):
    with pytest.raises(InvalidParameter) as err:
        dist.parse_manifest(data, media_type)
    assert why in str(err.value)


def _desc(arch, digest=BLOB, media_type=dist.OCI_MANIFEST, variant=None, **kw):
    plat = {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}
    return dist.Descriptor(media_type, digest, 100, plat, **kw)


def test_index_round_trip_and_platform_choice():
    descs = [_desc("arm64", "sha256:" + "a" * 64, variant="v8"), _desc("amd64", "sha256:" + "b" * 64),
             dist.Descriptor("application/vnd.in-toto+json", "sha256:" + "c" * 64, 5, None,
                             {"vnd.docker.reference.type": "attestation-manifest"})]
    data = dist.build_index(descs)
    media_type, entries = dist.parse_index(data)
    assert media_type == dist.OCI_INDEX and entries == descs
    assert dist.select_platform(entries, {"os": "linux", "architecture": "amd64"}).digest == "sha256:" + "b" * 64
    assert dist.select_platform(entries, {"os": "linux", "architecture": "arm64", "variant": "v8"}).digest \
        == "sha256:" + "a" * 64
    with pytest.raises(InvalidParameter) as err:
        dist.select_platform(entries, {"os": "linux", "architecture": "s390x"})
    assert "linux/amd64" in str(err.value) and "linux/arm64" in str(err.value)


def test_index_without_platforms_picks_its_only_manifest():
    d = dist.Descriptor(dist.OCI_MANIFEST, BLOB, 3)
    assert dist.select_platform([d]) == d


@pytest.mark.parametrize("data,why", [
    (json.dumps({"schemaVersion": 2, "mediaType": dist.OCI_INDEX, "manifests": {}}).encode(), "must be a list"),
    (json.dumps({"schemaVersion": 2, "mediaType": dist.OCI_INDEX,
                 "manifests": [{"mediaType": dist.OCI_MANIFEST, "digest": BLOB, "size": 1,
                                "platform": "linux"}]}).encode(), "platform"),
    (manifest(), "unknown media type"),
])
def test_bad_indexes_are_refused(data, why):
    with pytest.raises(InvalidParameter) as err:
        dist.parse_index(data)
    assert why in str(err.value)


def test_build_manifest_is_deterministic_and_parses_back():
    a = dist.build_manifest(CONFIG, [(dist.OCI_LAYER_TAR, DIFF, 2048)])
    assert a == dist.build_manifest(CONFIG, [(dist.OCI_LAYER_TAR, DIFF, 2048)])
    m = dist.parse_manifest(a)
    assert m.media_type == dist.OCI_MANIFEST and m.config.media_type == dist.OCI_CONFIG
    d = dist.parse_manifest(dist.build_manifest(CONFIG, [], dist.DOCKER_MANIFEST))
    assert d.config.media_type == dist.DOCKER_CONFIG and d.layers == ()
    with pytest.raises(InvalidParameter):
        dist.build_manifest(CONFIG, [], dist.OCI_INDEX)


@pytest.mark.parametrize("cfg,count,why", [
    ({"rootfs": {"type": "layers", "diff_ids": [DIFF]}}, 2, "lists 1 layers"),
    ({"rootfs": {"type": "other", "diff_ids": []}}, None, "rootfs must be"),
    ({}, None, "rootfs must be"),
    ({"rootfs": {"type": "layers", "diff_ids": ["sha256:xyz"]}}, None, "diff ID"),
])
def test_check_config_refuses_bad_rootfs(cfg, count, why):
    with pytest.raises(InvalidParameter) as err:
        dist.check_config(json.dumps(cfg).encode(), count)
    assert why in str(err.value)


def test_v1_ids_chain_and_legacy_json():
    cfg = {"created": "2024-01-01T00:00:00Z", "os": "linux", "architecture": "amd64", "config": {"Cmd": ["sh"]}}
    ids = dist.v1_ids(cfg, ["sha256:" + "3" * 64, "sha256:" + "4" * 64])
    assert len(ids) == 2 and len(set(ids)) == 2 and all(len(i) == 64 for i in ids)
    assert ids == dist.v1_ids(cfg, ["sha256:" + "3" * 64, "sha256:" + "4" * 64])
    top = dist.legacy_json(cfg, 1, 2, ids[1], ids[0])
    assert top["id"] == ids[1] and top["parent"] == ids[0] and top["config"] == {"Cmd": ["sh"]}
    assert "config" not in dist.legacy_json(cfg, 0, 2, ids[0], "")


def test_unknown_layer_media_type_is_refused():
    with pytest.raises(InvalidParameter):
        dist.layer_compression("application/octet-stream")
    assert dist.layer_compression(dist.OCI_LAYER_ZSTD) == "zstd"
    assert dist.layer_compression(dist.DOCKER_LAYER_TAR) is None
