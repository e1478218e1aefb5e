"""The one image model (dockyard.imagespec): manifests, indexes and configs parse
strictly (refusing what would not work later, with the field named and the kind
of fault told apart), build deterministically, and platforms are chosen like
Docker; the registry client and the image store both judge documents by it."""

import json

import pytest

from dockyard import imagespec as spec
from dockyard.engine.images.save import legacy_json, v1_ids
from dockyard.engine.layers.content import digest_of
from dockyard.errors import InvalidParameter, NotFound
from dockyard.imagespec import BadDocument, NoMatchingPlatform, Platform, UnsupportedMedia

DIFF = "sha256:" + "1" * 64
BLOB = "sha256:" + "2" * 64
CONFIG = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": [DIFF]}}).encode()


def manifest(**over):
    doc = {"schemaVersion": 2, "mediaType": spec.DOCKER_MANIFEST,
           "config": {"mediaType": spec.DOCKER_CONFIG, "digest": digest_of(CONFIG), "size": len(CONFIG)},
           "layers": [{"mediaType": spec.DOCKER_LAYER_GZIP, "digest": BLOB, "size": 10}]}
    doc.update(over)
    return json.dumps(doc).encode()


def test_docker_manifest_parses_with_descriptors():
    data = manifest()
    m = spec.parse_manifest(data, spec.DOCKER_MANIFEST)
    assert m.media_type == spec.DOCKER_MANIFEST and m.digest == digest_of(data)
    assert m.config.digest == digest_of(CONFIG) and m.config.size == len(CONFIG)
    assert [(d.digest, d.size) for d in m.layers] == [(BLOB, 10)]
    assert spec.layer_compression(m.layers[0].media_type) == "gzip"


def test_oci_manifest_without_media_type_is_told_by_shape():
    doc = json.loads(manifest())
    del doc["mediaType"]
    doc["config"]["mediaType"] = spec.OCI_CONFIG
    doc["layers"][0]["mediaType"] = spec.OCI_LAYER_TAR
    assert spec.parse_manifest(json.dumps(doc).encode()).media_type == spec.OCI_MANIFEST


def layer(**over):
    return [{"mediaType": spec.DOCKER_LAYER_GZIP, "digest": BLOB, "size": 1, **over}]


@pytest.mark.parametrize("data,media_type,kind,why", [
    (b"not json", None, BadDocument, "not JSON"),
    (b"[1]", None, BadDocument, "not a JSON object"),
    (manifest(schemaVersion=1), None, UnsupportedMedia, "schema 1"),
    (manifest(), "application/vnd.docker.distribution.manifest.v1+prettyjws", UnsupportedMedia, "schema 1"),
    (manifest(), spec.OCI_MANIFEST, BadDocument, "served as"),
    (manifest(mediaType="text/plain"), None, UnsupportedMedia, "unknown media type 'text/plain'"),
    (manifest(schemaVersion=3), None, UnsupportedMedia, "schemaVersion"),
    (manifest(layers={}), None, BadDocument, "layers must be a list"),
    (manifest(layers=layer(digest="sha256:abc")), None, BadDocument, "invalid digest 'sha256:abc'"),
    (manifest(layers=layer(digest="sha512:" + "a" * 128)), None, UnsupportedMedia, "unsupported algorithm"),
    (manifest(layers=layer(size=-1)), None, BadDocument, "size"),
    (manifest(layers=layer(size=True)), None, BadDocument, "size"),
    (manifest(layers=layer(mediaType=None)), None, BadDocument, "no mediaType"),
    (manifest(layers=layer(mediaType="application/x-foo")), None, UnsupportedMedia,
     "layer 1 sha256:2222222222222222222222222222222222222222222222222222222222222222 has unknown media type "
     "'application/x-foo' (expected a layer"),
    (manifest(layers=layer(urls="http://x")), None, BadDocument, "urls must be a list"),
    (manifest(config={"mediaType": "application/json", "digest": BLOB, "size": 1}), None, UnsupportedMedia,
     "expected an image config"),
    (manifest(config=None), None, BadDocument, "descriptor"),
])
def test_bad_manifests_are_refused_naming_the_field(data, media_type, kind, why):
    with pytest.raises(kind) as err:
        spec.parse_manifest(data, media_type)
    assert why in str(err.value)
    assert isinstance(err.value, InvalidParameter)  # bad input to the image store: 400


def _desc(arch, digest=BLOB, media_type=spec.OCI_MANIFEST, variant=None, **kw):
    plat = {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}
    return spec.Descriptor(media_type, digest, 100, plat, **kw)


def test_index_round_trip_and_platform_choice():
    descs = [_desc("arm64", "sha256:" + "a" * 64, variant="v8"), _desc("amd64", "sha256:" + "b" * 64),
             spec.Descriptor("application/vnd.in-toto+json", "sha256:" + "c" * 64, 5, None,
                             {"vnd.docker.reference.type": "attestation-manifest"})]
    data = spec.build_index(descs)
    index = spec.parse_index(data)
    assert index.media_type == spec.OCI_INDEX and index.manifests == tuple(descs)
    assert index.digest == digest_of(data)
    assert isinstance(index.manifests[0].platform, Platform)
    assert index.select(Platform("linux", "amd64")).digest == "sha256:" + "b" * 64
    assert index.select(Platform.parse("linux/arm64/v8")).digest == "sha256:" + "a" * 64
    assert index.select(Platform.parse("linux/arm64")).digest == "sha256:" + "a" * 64  # any variant
    with pytest.raises(NoMatchingPlatform) as err:
        index.select(Platform.parse("linux/arm64/v7"))
    with pytest.raises(NoMatchingPlatform) as err:
        index.select(Platform("linux", "s390x"))
    assert str(err.value) == ("no matching manifest for linux/s390x in the manifest list entries "
                              "(offered: linux/amd64, linux/arm64/v8)")


def test_attestations_and_unplatformed_entries():
    att = spec.Descriptor(spec.OCI_MANIFEST, "sha256:" + "d" * 64, 5, {"os": "unknown", "architecture": "unknown"},
                          {"vnd.docker.reference.type": "attestation-manifest"})
    lone = spec.Descriptor(spec.OCI_MANIFEST, BLOB, 3)
    assert spec.select_platform([lone]) == lone  # an index's only image, whatever it runs on
    assert spec.select_platform([lone, att]) == lone  # attestations are not images
    other = spec.Descriptor(spec.OCI_MANIFEST, "sha256:" + "e" * 64, 3)
    with pytest.raises(NoMatchingPlatform):
        spec.select_platform([lone, other])  # which one? neither says
    with pytest.raises(NoMatchingPlatform, match="offered: none"):
        spec.select_platform([att], Platform("linux", "amd64"))


def test_platforms():
    p = Platform.parse("linux/arm64/v8")
    assert (p.os, p.architecture, p.variant, str(p)) == ("linux", "arm64", "v8", "linux/arm64/v8")
    assert Platform.from_json({"os": "linux", "architecture": "amd64", "os.version": "1"}).to_json() == \
        {"architecture": "amd64", "os": "linux", "os.version": "1"}
    assert Platform.here() in Platform.wanted() and Platform("linux", "amd64") in Platform.wanted()
    for bad in ("linux", "linux//x", "", "a/b/c/d"):
        with pytest.raises(InvalidParameter, match="invalid platform"):
            Platform.parse(bad)
    with pytest.raises(BadDocument, match="architecture must be a string"):
        Platform.from_json({"os": "linux", "architecture": 64})


@pytest.mark.parametrize("data,why", [
    (json.dumps({"schemaVersion": 2, "mediaType": spec.OCI_INDEX, "manifests": {}}).encode(), "must be a list"),
    (json.dumps({"schemaVersion": 2, "mediaType": spec.OCI_INDEX,
                 "manifests": [{"mediaType": spec.OCI_MANIFEST, "digest": BLOB, "size": 1,
                                "platform": "linux"}]}).encode(), "platform"),
    (manifest(), "unknown media type"),
])
def test_bad_indexes_are_refused(data, why):
    with pytest.raises(InvalidParameter) as err:
        spec.parse_index(data)
    assert why in str(err.value)


def test_media_type_of_a_served_document():
    assert spec.media_type_of(b'{"schemaVersion":2,"manifests":[]}', "application/json") == spec.OCI_INDEX
    assert spec.media_type_of(b"{}", spec.DOCKER_MANIFEST + "; charset=utf-8") == spec.DOCKER_MANIFEST
    assert spec.media_type_of(b'{"schemaVersion":1}', "") == spec.SCHEMA1[0]
    with pytest.raises(UnsupportedMedia, match="schema 1"):
        spec.check_type(spec.SCHEMA1[0])
    with pytest.raises(UnsupportedMedia, match="unknown media type 'text/html'"):
        spec.check_type("text/html")


def test_build_manifest_is_deterministic_and_parses_back():
    a = spec.build_manifest(CONFIG, [(spec.OCI_LAYER_TAR, DIFF, 2048)])
    assert a == spec.build_manifest(CONFIG, [(spec.OCI_LAYER_TAR, DIFF, 2048)])
    m = spec.parse_manifest(a)
    assert m.media_type == spec.OCI_MANIFEST and m.config.media_type == spec.OCI_CONFIG
    d = spec.parse_manifest(spec.build_manifest(CONFIG, [], spec.DOCKER_MANIFEST))
    assert d.config.media_type == spec.DOCKER_CONFIG and d.layers == ()
    with pytest.raises(InvalidParameter):
        spec.build_manifest(CONFIG, [], spec.OCI_INDEX)


@pytest.mark.parametrize("cfg,count,why", [
    ({"rootfs": {"type": "layers", "diff_ids": [DIFF]}}, 2, "lists 1 layers"),
    ({"rootfs": {"type": "other", "diff_ids": []}}, None, "rootfs must be"),
    ({}, None, "rootfs must be"),
    ({"rootfs": {"type": "layers", "diff_ids": ["sha256:xyz"]}}, None, "diff ID"),
])
def test_check_config_refuses_bad_rootfs(cfg, count, why):
    with pytest.raises(BadDocument) as err:
        spec.check_config(json.dumps(cfg).encode(), count)
    assert why in str(err.value)


def test_registry_content_is_judged_by_the_same_model():
    """What the model refuses in a registry's answer is the registry's fault (502),
    a missing platform a missing image (404); an unknown type stays a 400."""
    from dockyard.registry.errors import BadContent, RegistryNotFound, UnsupportedContent, sent_by_registry

    with pytest.raises(BadContent) as err, sent_by_registry():
        spec.parse_manifest(manifest(layers={}))
    assert err.value.status == 502 and "layers must be a list" in str(err.value)
    with pytest.raises(RegistryNotFound) as err, sent_by_registry():
        spec.select_platform([_desc("arm64")], Platform("linux", "s390x"))
    assert isinstance(err.value, NotFound) and "no matching manifest for linux/s390x" in str(err.value)
    with pytest.raises(UnsupportedContent) as err, sent_by_registry():
        spec.parse_manifest(manifest(mediaType="text/plain"))
    assert err.value.status == 400


def test_v1_ids_chain_and_legacy_json():
    from dockyard.model.image import ImageConfig

    cfg = ImageConfig.from_json({"created": "2024-01-01T00:00:00Z", "os": "linux", "architecture": "amd64",
                                 "config": {"Cmd": ["sh"]}})
    ids = v1_ids(cfg, ["sha256:" + "3" * 64, "sha256:" + "4" * 64])
    assert len(ids) == 2 and len(set(ids)) == 2 and all(len(i) == 64 for i in ids)
    assert ids == v1_ids(cfg, ["sha256:" + "3" * 64, "sha256:" + "4" * 64])
    top = legacy_json(cfg, 1, 2, ids[1], ids[0])
    assert top["id"] == ids[1] and top["parent"] == ids[0] and top["config"] == {"Cmd": ["sh"]}
    assert "config" not in legacy_json(cfg, 0, 2, ids[0], "")


def test_unknown_layer_media_type_is_refused():
    with pytest.raises(UnsupportedMedia):
        spec.layer_compression("application/octet-stream")
    assert spec.layer_compression(spec.OCI_LAYER_ZSTD) == "zstd"
    assert spec.layer_compression(spec.DOCKER_LAYER_TAR) is None
