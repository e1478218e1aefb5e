"""The typed image config (dockyard.model.image) and the Docker API views built from
it: a database written by the last release (tests/data/store-1) must show the same
``image inspect`` and ``images`` as that release served (its api.json)."""

import json
import sqlite3
from pathlib import Path

import pytest

from dockyard.imagespec import BadDocument
from dockyard.model.image import ContainerConfig, HealthConfig, ImageConfig

STORE_1 = Path(__file__).resolve().parents[1] / "data" / "store-1"

DOCKER_BUILT = (
    b'{"architecture":"amd64","config":{"Hostname":"","User":"","Env":["PATH=/bin"],"Cmd":["sh"],'
    b'"Healthcheck":{"Test":["CMD","true"],"Interval":1000},"Volumes":null,"OnBuild":null,"Labels":null,'
    b'"X-Future":[1]},"created":"2023-05-19T20:19:24Z","history":[{"created":"2023-05-19T20:19:24Z",'
    b'"created_by":"ADD x","comment":"c"},{"created_by":"CMD","empty_layer":true}],"os":"linux",'
    b'"os.version":"1","rootfs":{"type":"layers","diff_ids":["sha256:' + b"1" * 64 + b'"]},"moby.x":"kept"}')


def test_reads_fields_under_their_json_keys():
    cfg = ImageConfig.parse(DOCKER_BUILT)
    assert (cfg.architecture, cfg.os, cfg.os_version, cfg.created) == ("amd64", "linux", "1", "2023-05-19T20:19:24Z")
    assert cfg.config.env == ["PATH=/bin"] and cfg.config.cmd == ["sh"]
    assert cfg.config.healthcheck == HealthConfig(test=["CMD", "true"], interval=1000)
    assert cfg.diff_ids == ["sha256:" + "1" * 64]
    assert [h.empty_layer for h in cfg.history] == [None, True]
    assert cfg.history[0].created_by == "ADD x" and cfg.labels == {}


def test_unknown_keys_order_and_nulls_survive_a_round_trip():
    cfg = ImageConfig.parse(DOCKER_BUILT)
    assert json.dumps(cfg.to_json(), separators=(",", ":")).encode() == DOCKER_BUILT
    assert cfg.extra == {"moby.x": "kept"} and cfg.config.extra == {"X-Future": [1]}


def test_setting_a_field_makes_its_key_present_as_a_dict_key_did():
    cfg = ContainerConfig.from_json({"Env": ["A=1"]})
    changed = cfg.replace(cmd=None, user="u")
    assert changed.to_json() == {"Env": ["A=1"], "Cmd": None, "User": "u"}
    assert cfg.to_json() == {"Env": ["A=1"]}  # the original is untouched
    copy = cfg.copy()
    copy.env.append("B=2")
    assert cfg.env == ["A=1"]


def test_a_command_given_as_one_string_is_a_list_of_one_as_docker_reads_it():
    assert ContainerConfig.from_json({"Cmd": "sh", "Entrypoint": None}).cmd == ["sh"]


@pytest.mark.parametrize("doc, where", [
    (b"[]", "not a JSON object"),
    (b"{", "not JSON"),
    (b'{"config": {"Env": 5}}', "env"),
    (b'{"history": [3]}', "History must be a JSON object"),
])
def test_a_config_of_the_wrong_shape_is_refused_naming_what(doc, where):
    with pytest.raises(BadDocument, match=where):
        ImageConfig.parse(doc)


@pytest.fixture
def release_images(tmp_path):
    """An ImageStore over the release's database (its layers' rows, a vfs slot)."""
    if not (STORE_1 / "dump.sql").exists():
        pytest.skip("tests/data/store-1 is not there")
    from dockyard.engine.images.store import ImageStore
    from dockyard.engine.layers.store import LayerStore
    from dockyard.plugins import load_driver
    from dockyard.store import Store

    db = tmp_path / "dockyard.db"
    con = sqlite3.connect(db)
    con.executescript((STORE_1 / "dump.sql").read_text())
    con.close()
    slot = load_driver("storage", "vfs", tmp_path / "storage" / "vfs")
    slot.init()
    store = Store(db)
    (tmp_path / "tmp").mkdir()
    yield ImageStore(store, LayerStore(slot, store), str(tmp_path / "tmp"))
    store.close()


def test_views_of_a_release_database_are_what_the_release_served(release_images):
    from dockyard.engine.images import listing

    api = json.loads((STORE_1 / "api.json").read_text())
    assert api["images"], "the release recorded no image"
    for ref, served in api["images"].items():
        shown = listing.inspect(release_images, release_images.resolve(ref))
        shown["GraphDriver"]["Name"] = served["GraphDriver"]["Name"]  # vfs here, the release's driver there
        assert shown == served, ref
        # byte for byte, as the API writes it (key order included)
        assert json.dumps(shown, sort_keys=True) == json.dumps(served, sort_keys=True)
        assert list(shown["Config"]) == list(served["Config"])
    listed = list(listing.iter_images(release_images, False, {}))
    assert listed == api["images_json"]


def test_history_of_a_release_build(release_images):
    rows = release_images.history("built:1")
    assert [r["CreatedBy"] for r in rows] == [
        '/bin/sh -c #(nop)  CMD ["cat" "/built.txt"]', "/bin/sh -c #(nop)  LABEL stage=release",
        "/bin/sh -c echo built > /built.txt", "/bin/sh -c #(nop)  ENV BUILT=yes", ""]
    assert [r["Size"] for r in rows] == [0, 0, 6, 0, 1982365]
    assert rows[0]["Id"] == release_images.resolve("built:1") and rows[0]["Tags"] == ["built:1"]
    assert rows[-1]["Comment"] == "Imported from -"


def test_changes_and_import_write_the_typed_config():
    from dockyard.engine.images import changes

    cfg = changes.apply(ContainerConfig(), ["ENV A=1", "CMD echo", "ONBUILD RUN x"])
    assert cfg.to_json() == {"Env": ["A=1"], "Cmd": ["/bin/sh", "-c", "echo"], "OnBuild": ["RUN x"]}
