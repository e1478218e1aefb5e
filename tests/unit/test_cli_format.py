"""``--format`` templates fail as docker's do (Go's words, docker's prefixes and
exit statuses), and sizes are rounded as docker rounds each of them."""

import json

import pytest

from dockyard.cli import common, containers, diskusage, execs, images, output, volumes
from dockyard.cli.gotemplate import ERROR, Template, TemplateError


def test_parse_errors_are_gos():
    for text, message in (("{{.Foo", "template: :1: unclosed action"),
                          ("{{.Size}}x{{nofunc}}", 'template: :1: function "nofunc" not defined'),
                          ("a\n{{end}}", "template: :2: unexpected {{end}}"),
                          ("{{range .X}}", "template: :1: unexpected EOF")):
        with pytest.raises(TemplateError) as exc:
            Template(text)
        assert str(exc.value) == message
    with pytest.raises(TemplateError, match=r"^template: version:1: unclosed action$"):
        Template("{{.Foo", "version")


def test_execution_errors_name_the_place_and_the_field():
    obj = {"Config": {"Cmd": ["sh"]}, "State": {"Status": "running"}}
    with pytest.raises(TemplateError) as exc:
        Template("{{.Config.Foo}}").render(obj, missing=ERROR)
    assert str(exc.value) == 'template: :1:9: executing "" at <.Config.Foo>: map has no entry for key "Foo"'
    with pytest.raises(TemplateError) as exc:
        Template("{{.State.Health.Status}}").render(obj, missing=ERROR)
    assert str(exc.value).startswith('template: :1:8: executing "" at <.State.Health.Status>: map has no entry')
    with pytest.raises(TemplateError) as exc:
        Template("x\n {{.Foo}}").render({"ID": "1"}, context="*formatter.imageContext")
    assert str(exc.value) == ('template: :2:3: executing "" at <.Foo>: can\'t evaluate field Foo in type '
                              '*formatter.imageContext')
    with pytest.raises(TemplateError, match=r"wrong number of args for index: want at least 1 got 0"):
        Template("{{index}}").render(obj)
    # without missingkey=error a map's missing key prints <no value>, as Go's default
    assert Template("{{.Config.Foo}}").render(obj) == "<no value>"


def test_rows_have_dockers_methods():
    rec = containers.ps_record({"Id": "a" * 64, "Labels": {"b": "2", "a": "1"}, "Names": ["/x"],
                                "SizeRw": 1200, "SizeRootFs": 4_500_000,
                                "Mounts": [{"Name": "v" * 20, "Driver": "local"}, {"Source": "/srv", "Driver": ""}]})
    render = lambda t: output.render_rows(t, [rec], containers.PS_HEADERS, containers.PS_CONTEXT)[0]  # noqa: E731
    assert render('{{.Label "b"}}|{{.Labels}}') == "2|a=1,b=2"
    assert render("{{.Size}}") == "1.2kB (virtual 4.5MB)"
    assert render("{{.Mounts}} {{.LocalVolumes}}") == "vvvvvvvvvvvvvv…,/srv 1"
    assert json.loads(render("{{json .}}"))["Names"] == "x"  # methods are not marshalled
    with pytest.raises(TemplateError, match=r"wrong number of args for Label: want 1 got 0"):
        render("{{.Label}}")


def test_print_rows_reports_like_docker(capsys):
    rec = images.image_records([{"Id": "sha256:" + "b" * 64, "RepoTags": ["busybox:latest"], "Size": 1_982_000}])
    assert output.print_rows("{{.Foo", rec, images.IMAGES_HEADERS, images.IMAGES_CONTEXT) == 1
    assert capsys.readouterr().err == "template parsing error: template: :1: unclosed action\n"
    assert output.print_rows("table {{.Foo}}", rec, images.IMAGES_HEADERS, images.IMAGES_CONTEXT) == 1
    assert capsys.readouterr().err == ('template parsing error: template: :1:2: executing "" at <.Foo>: '
                                       "can't evaluate field Foo in type *formatter.imageContext\n")
    assert output.check_rows_template("{{.Foo}}", containers.ps_record({}), containers.PS_CONTEXT,
                                      containers.PS_ERRORS) == 1
    assert capsys.readouterr().err.startswith("failed to execute template: template: :1:2:")
    assert output.print_rows("{{.Repository}}:{{.Size}}", rec, images.IMAGES_HEADERS, images.IMAGES_CONTEXT) == 0
    assert capsys.readouterr().out == "busybox:1.98MB\n"


def test_inspect_template_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        common.inspect_template("{{.Foo")
    assert exc.value.code == 64 and capsys.readouterr().err == "template parsing error: template: :1: unclosed action\n"
    fetched = {"a": {"Id": "1"}, "b": {"Id": "2", "Foo": "x"}}
    assert common.inspect_each(["a", "b"], fetched.__getitem__, "{{.Foo}}") == 1
    out = capsys.readouterr()
    assert out.out == "x\n" and "map has no entry for key \"Foo\"" in out.err


def test_go_units_as_docker_uses_them():
    assert [output.human_size(n) for n in (0, 999, 999.6, 1982000, 5_300_000_000)] == [
        "0B", "999B", "1e+03B", "1.98MB", "5.3GB"]
    assert [output.human_size(n, 4) for n in (1024, 3_965_000, 1982000)] == ["1.024kB", "3.965MB", "1.982MB"]
    assert [output.bytes_size(n) for n in (0, 204 * 1024, 1.5 * 2**20, 25276182528)] == [
        "0B", "204KiB", "1.5MiB", "23.54GiB"]


def test_stats_memory_in_binary_units_and_io_in_decimal():
    rec = execs.stats_record({"id": "c" * 64, "name": "/web", "memory_stats": {"usage": 209_000 + 4096,
                              "limit": 25276182528, "stats": {"inactive_file": 4096}},
                              "networks": {"eth0": {"rx_bytes": 2830, "tx_bytes": 1010}},
                              "blkio_stats": {"io_service_bytes_recursive": [{"op": "read", "value": 1_500_000}]},
                              "pids_stats": {"current": 1}})
    assert rec["MemUsage"] == "204.1KiB / 23.54GiB" and rec["NetIO"] == "2.83kB / 1.01kB"
    assert rec["BlockIO"] == "1.5MB / 0B"


def test_system_df_rows_as_docker_computes_them():
    df = {"LayersSize": 3_965_000,
          "Images": [{"Size": 1_982_000, "SharedSize": 0, "Containers": 1}, {"Size": 1_983_000, "SharedSize": 0,
                                                                             "Containers": 0}],
          "Containers": [{"SizeRw": 1000, "State": "running"}, {"SizeRw": 3000, "State": "exited"},
                         {"SizeRw": 0, "State": "paused"}],
          "Volumes": [{"UsageData": {"Size": 0, "RefCount": 0}}], "BuildCache": []}
    rows = diskusage.summary_rows(df)
    assert [(r["Type"], r["TotalCount"], r["Active"], r["Size"], r["Reclaimable"]) for r in rows] == [
        ("Images", "2", "1", "3.965MB", "1.983MB (50%)"),
        ("Containers", "3", "2", "4kB", "3kB (75%)"),
        ("Local Volumes", "1", "0", "0B", "0B"),
        ("Build Cache", "0", "0", "0B", "0B")]


def test_volume_and_image_rows_say_na_for_what_was_not_measured():
    v = volumes.volume_record({"Name": "v", "Driver": "local", "Mountpoint": "/m", "Scope": "local"})
    assert (v["Size"], v["Links"]) == ("N/A", "N/A")
    v = volumes.volume_record({"Name": "v", "Driver": "local", "Mountpoint": "/m", "Scope": "local",
                               "UsageData": {"Size": 1024, "RefCount": 2}, "Labels": {"k": "v"}})
    assert (v["Size"], v["Links"], v["Label"]("k")) == ("1.024kB", "2", "v")
    img = images.image_records([{"Id": "sha256:" + "b" * 64, "RepoTags": ["a:1", "b:2"], "Size": 1_982_000,
                                 "SharedSize": -1}])
    assert len(img) == 2 and (img[0]["SharedSize"], img[0]["UniqueSize"], img[0]["VirtualSize"]) == (
        "N/A", "N/A", "1.982MB")
    assert len(images.image_records([{"Id": "sha256:" + "b" * 64, "RepoTags": ["a:1", "b:2"]}],
                                    first_tag=True)) == 1


def test_action_tokens_without_re_are_the_regexs():
    """An action's tokens are split by hand when it has no string, parenthesis or
    pipe (so a plain ``ps`` never imports ``re``): the same tokens, offsets and
    identifier and number checks as the regular expressions, on random actions."""
    import random
    import re

    from dockyard.cli import gotemplate

    rng = random.Random(17)
    alphabet = ' \t\n.ab_Z9"`()|-$é\u3000\u00a0\\x'
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        expected = [(m.group(), 5 + m.start()) for m in re.finditer(gotemplate._TOKEN, text)]
        assert gotemplate._tokens(text, 5) == expected, text
        for tok, _ in expected:
            assert gotemplate._is_function_name(tok) == bool(re.fullmatch(r"[A-Za-z_]\w*", tok)), tok
    assert Template('{{printf "%v-%v" . .}}').render("x") == "x-x"
