"""dockyard.builder.dockerfile: Docker's parser semantics (cases from BuildKit's parser tests and docs)."""

import pytest

from dockyard.builder import dockerfile as df
from dockyard.builder.dockerfile import DockerfileError, parse, parse_duration
from dockyard.builder.shellexpand import expand_word


def one(text):
    """The single instruction after ``FROM scratch``."""
    (ins,) = parse("FROM scratch\n" + text).stages[0].instructions
    return ins


def err(text):
    with pytest.raises(DockerfileError) as info:
        parse(text)
    return info.value


# ---- lines, comments, continuations --------------------------------------------------------

def test_stages_lines_and_originals():
    d = parse("ARG V=1\n\nFROM alpine:$V AS Build\nRUN make\n# c\nfrom --platform=linux/arm64 busybox\n"
              "COPY --from=build /out /out\n")
    assert [a.pairs for a in d.args] == [[("V", "1")]]
    b, f = d.stages
    assert (b.index, b.name, b.base, b.platform, b.from_.line) == (0, "build", "alpine:$V", None, 3)
    assert (f.name, f.base, f.platform) == (None, "busybox", "linux/arm64")
    assert [(i.cmd, i.line, i.original) for i in b.instructions] == [("RUN", 4, "RUN make")]
    assert f.instructions[0].flags == {"from": "build"}
    assert d.stage("BUILD") is b and d.stage(1) is f
    with pytest.raises(KeyError):
        d.stage("nope")


def test_continuation_joins_and_keeps_inner_spacing():
    ins = one("RUN apt-get update \\\n    && apt-get install -y \\\n  curl\n")
    assert ins.args == ["apt-get update     && apt-get install -y   curl"]
    assert (ins.line, ins.end_line) == (2, 4)


def test_continuation_with_trailing_blanks_after_escape():
    assert one("RUN a \\  \t\nb\n").args == ["a b"]


def test_comments_inside_continuation_are_dropped():
    ins = one("RUN echo hello \\\n# a comment\n  # indented comment\n  world\n")
    assert ins.args == ["echo hello   world"] and ins.end_line == 5


def test_empty_continuation_lines_skipped_with_warning():
    d = parse("FROM scratch\nRUN a \\\n\n   \nb\n")
    assert d.stages[0].instructions[0].args == ["a b"]
    assert len(d.warnings) == 1 and "Empty continuation line" in d.warnings[0]


def test_hash_mid_line_is_not_a_comment():
    assert one("RUN echo # not a comment\n").args == ["echo # not a comment"]


def test_comment_cannot_continue():
    assert one("# comment \\\nRUN x\n").args == ["x"]


def test_escape_at_end_of_file():
    ins = one("RUN a \\")  # the escape is dropped and the instruction just ends
    assert ins.args == ["a"] and ins.end_line == 2


def test_crlf_and_bom_and_indentation():
    d = parse("\ufeffFROM scratch\r\n    RUN a \\\r\n b\r\n\tcmd x\r\n")
    assert [(i.cmd, i.args) for i in d.stages[0].instructions] == [("RUN", ["a  b"]), ("CMD", ["x"])]


def test_instructions_are_case_insensitive():
    d = parse("from scratch\nRuN x\nworkDir /a\n")
    assert [i.cmd for i in d.stages[0].instructions] == ["RUN", "WORKDIR"]


# ---- directives ----------------------------------------------------------------------------

def test_escape_backtick_directive():
    d = parse("# escape=`\nFROM windows\nCOPY testfile.txt c:\\\nRUN dir c:\\ `\n  /s\n")
    copy, run = d.stages[0].instructions
    assert d.escape == "`" and copy.args == ["testfile.txt", "c:\\"] and run.args == ["dir c:\\   /s"]


def test_directives_syntax_and_case():
    d = parse("#  SYNTAX = docker/dockerfile:1 \n# Escape = \\\nFROM scratch\n")
    assert d.syntax == "docker/dockerfile:1" and d.escape == "\\"


def test_directive_only_at_top():
    for text in ("FROM scratch\n# escape=`\nRUN a `\n", "# comment\n# escape=`\nFROM scratch\nRUN a `\n",
                 "\n# escape=`\nFROM scratch\nRUN a `\n", "# unknown=x\n# escape=`\nFROM scratch\nRUN a `\n"):
        d = parse(text)
        assert d.escape == "\\" and d.stages[0].instructions[0].args == ["a `"]


def test_directive_errors():
    assert "only one escape parser directive" in str(err("# escape=\\\n# escape=`\nFROM scratch\n"))
    e = err("# escape=x\nFROM scratch\n")
    assert e.line == 1 and "invalid escape token 'x'" in str(e)


# ---- errors ---------------------------------------------------------------------------------

def test_unknown_instruction_names_line():
    e = err("FROM scratch\nRUN x\nFOOBAR baz\n")
    assert str(e) == "Dockerfile:3: unknown instruction: FOOBAR" and e.line == 3
    assert isinstance(e, ValueError)


def test_errors_and_filename():
    assert str(err("")) == "Dockerfile: file with no instructions"
    assert "file with no instructions" in str(err("# only a comment\n\n"))
    assert "no FROM instruction" in str(err("ARG a\n"))
    assert str(err("RUN x\nFROM scratch\n")) == "Dockerfile:1: no build stage in current context"
    with pytest.raises(DockerfileError, match=r"^app\.Dockerfile:2: "):
        parse("FROM a\nWHAT\n", filename="app.Dockerfile")


@pytest.mark.parametrize("line,message", [
    ("FROM a b", "FROM requires either one or three arguments"),
    ("FROM a AT b", "FROM requires either one or three arguments"),
    ("FROM", "FROM requires at least one argument"),
    ("FROM a AS 1st", "invalid name for build stage"),
    ("FROM a AS b!", "invalid name for build stage"),
    ("COPY onlyone", "COPY requires at least two arguments"),
    ('ADD ["x"]', "ADD requires at least two arguments"),
    ("ENV", "ENV requires at least one argument"),
    ("ENV novalue", "ENV must have two arguments"),
    ("ENV a=1 b", "can't find = in 'b'"),
    ("LABEL", "LABEL requires at least one argument"),
    ("ARG", "ARG requires at least one argument"),
    ("EXPOSE", "EXPOSE requires at least one argument"),
    ("VOLUME", "VOLUME requires at least one argument"),
    ('VOLUME ["/a", ""]', "VOLUME specified can not be an empty string"),
    ("USER", "USER requires exactly one argument"),
    ("WORKDIR", "WORKDIR requires exactly one argument"),
    ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
    ("RUN", "RUN requires at least one argument"),
    ("SHELL /bin/sh -c", "SHELL requires the arguments to be in JSON form"),
    ("SHELL []", "SHELL requires at least one argument"),
    ('CMD ["a", 1]', "arrays must be comprised of strings only"),
    ("ONBUILD", "ONBUILD requires at least one argument"),
    ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("ONBUILD FROM", "FROM isn't allowed as an ONBUILD trigger"),
    ("onbuild maintainer me", "MAINTAINER isn't allowed as an ONBUILD trigger"),
    ("ONBUILD BOGUS x", "unknown instruction: BOGUS"),
    ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
    ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
    ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
    ("HEALTHCHECK RUN x", "Unknown type 'RUN' in HEALTHCHECK (try CMD)"),
    ("HEALTHCHECK --interval=5 CMD x", "invalid duration"),
    ("HEALTHCHECK --interval=-1s CMD x", "cannot be negative"),
    ("HEALTHCHECK --timeout=10us CMD x", "cannot be less than 1ms"),
    ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative (-1)"),
    ("HEALTHCHECK --retries=x CMD x", "must be an integer"),
    ("HEALTHCHECK --interval CMD x", "missing a value on flag: interval"),
    ("COPY --bogus=1 a b", "unknown flag: bogus"),
    ("CMD --x a", "unknown flag: x"),
    ("COPY --from=a --from=b a b", "duplicate flag specified: from"),
    ("COPY --link=maybe a b", "expecting boolean value for flag link, not: maybe"),
    ("RUN --mount=type=cache,target=/x make", "RUN --mount is not supported"),
    ("RUN --network=none make", "RUN --network is not supported"),
    ("COPY --parents a b", "COPY --parents is not supported"),
    ("RUN cat <<EOF\nhello\nEOF", "heredocs (<<EOF) are not supported"),
    ("RUN <<-'EOT' bash", "heredocs (<<-'EOT') are not supported"),
    ("COPY <<EOF /dst", "heredocs"),
])
def test_instruction_errors(line, message):
    e = err("FROM scratch\n" + line + "\n")
    assert e.line == 2 and message in str(e), str(e)
    assert str(e).startswith("Dockerfile:2: ")


def test_duplicate_stage_name():
    e = err("FROM a AS x\nFROM b AS X\n")
    assert e.line == 2 and "duplicate stage name 'x'" in str(e)


# ---- exec vs shell form ---------------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["RUN", "CMD", "ENTRYPOINT"])
def test_exec_and_shell_form(cmd):
    ins = one(f'{cmd} ["/bin/sh", "-c", "echo \\"hi\\""]\n')
    assert ins.json and ins.args == ["/bin/sh", "-c", 'echo "hi"']
    ins = one(f"{cmd} echo $HOME 'x'\n")
    assert not ins.json and ins.args == ["echo $HOME 'x'"]


def test_invalid_json_falls_back_to_shell_form():
    for text in ('CMD ["a", "b"', "CMD [a, b]", "CMD ['a']", 'CMD ["a"] extra', "CMD [NaN]"):
        ins = one(text + "\n")
        assert not ins.json and ins.args == [text[4:]]


def test_json_edge_cases():
    ins = one("CMD []\n")
    assert ins.json and ins.args == []
    ins = one('ENTRYPOINT   [ "a" ,"b" ]  \n')
    assert ins.json and ins.args == ["a", "b"]
    assert one('SHELL ["powershell", "-command"]\n').args == ["powershell", "-command"]
    ins = one("CMD\n")
    assert ins.args == [] and not ins.json


def test_json_with_backtick_escape():
    d = parse('# escape=`\nFROM scratch\nRUN ["c:\\\\windows\\\\app.exe", "a"]\n')
    assert d.stages[0].instructions[0].args == ["c:\\windows\\app.exe", "a"]


# ---- ENV / LABEL / ARG ----------------------------------------------------------------------

def test_env_forms():
    assert one('ENV a=1 b="2 3" c=\'x y\' d=e\\ f\n').pairs == [("a", "1"), ("b", '"2 3"'), ("c", "'x y'"),
                                                                  ("d", "e\\ f")]
    assert one("ENV legacy the rest  is   the value\n").pairs == [("legacy", "the rest  is   the value")]
    assert one('ENV e=\n').pairs == [("e", "")]
    assert one('ENV e=""\n').pairs == [("e", '""')]
    assert one("ENV a=1 \\\n    b=2\n").pairs == [("a", "1"), ("b", "2")]


def test_env_values_expand_and_unquote():
    ins = one('ENV b="2 3" c=\'$x\' d=e\\ f g=$x\n')
    assert [expand_word(v, {"x": "X"}) for _, v in ins.pairs] == ["2 3", "$x", "e f", "X"]


def test_label_forms():
    assert one('LABEL "com.example.vendor"="ACME Inc" version=1.0 description="multi \\\n  line"\n').pairs == [
        ('"com.example.vendor"', '"ACME Inc"'), ("version", "1.0"), ("description", '"multi   line"')]
    assert one("LABEL maintainer me\n").pairs == [("maintainer", "me")]


def test_arg_forms():
    assert one('ARG a b=1 c="x y" d=\n').pairs == [("a", None), ("b", "1"), ("c", '"x y"'), ("d", "")]


# ---- other instructions ---------------------------------------------------------------------

def test_copy_add_forms():
    ins = one("COPY --chown=user:grp --chmod=0755 a b /dst/\n")
    assert ins.args == ["a", "b", "/dst/"] and ins.flags == {"chown": "user:grp", "chmod": "0755"}
    ins = one('COPY ["my file", "/dst dir/"]\n')
    assert ins.json and ins.args == ["my file", "/dst dir/"]
    ins = one('ADD --checksum=sha256:abc --link --keep-git-dir=false https://x/y.tgz /\n')
    assert ins.flags == {"checksum": "sha256:abc", "link": True, "keep-git-dir": False}
    assert one("COPY --link=false a b\n").flags == {"link": False}
    assert one('COPY "--from=a b" c d\n').args == ['"--from=a', 'b"', "c", "d"]  # not a flag: starts with "
    assert one("COPY -- --weird b\n").args == ["--weird", "b"]
    assert one('COPY --chown="a b" x y\n').flags == {"chown": "a b"}


def test_expose_volume_user_workdir_stopsignal():
    assert one("EXPOSE 80/tcp  443 $PORT\n").args == ["80/tcp", "443", "$PORT"]
    assert one("VOLUME /a /b\n").args == ["/a", "/b"] and not one("VOLUME /a /b\n").json
    ins = one('VOLUME ["/data", "/my vol"]\n')
    assert ins.json and ins.args == ["/data", "/my vol"]
    assert one("USER app:app\n").args == ["app:app"]
    assert one("WORKDIR /my dir\n").args == ["/my dir"]
    assert one("STOPSIGNAL SIGKILL\n").args == ["SIGKILL"]
    assert one("MAINTAINER Jane <j@x>\n").args == ["Jane <j@x>"]


def test_healthcheck():
    ins = one("HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms --retries=3 "
              "CMD curl -f http://localhost/ || exit 1\n")
    assert ins.healthcheck == "CMD" and not ins.json and ins.args == ["curl -f http://localhost/ || exit 1"]
    assert ins.flags == {"interval": 300 * 10**9, "timeout": 3 * 10**9, "start-period": 90 * 10**9,
                         "start-interval": 500 * 10**6, "retries": 3}
    ins = one('healthcheck cmd ["/bin/check", "-q"]\n')
    assert ins.healthcheck == "CMD" and ins.json and ins.args == ["/bin/check", "-q"]
    ins = one("HEALTHCHECK none\n")
    assert ins.healthcheck == "NONE" and ins.args == []
    assert one("HEALTHCHECK --interval=0 CMD x\n").flags == {"interval": 0}


def test_onbuild():
    ins = one("ONBUILD COPY --chown=1:1 . /app\n")
    assert ins.cmd == "ONBUILD" and ins.original == "ONBUILD COPY --chown=1:1 . /app"
    t = ins.trigger
    assert (t.cmd, t.args, t.flags, t.original, t.line) == ("COPY", [".", "/app"], {"chown": "1:1"},
                                                             "COPY --chown=1:1 . /app", 2)
    assert one('onbuild run ["a"]\n').trigger.json


def test_flags_are_per_instruction():
    assert "unknown flag: platform" in str(err("FROM scratch\nCOPY --platform=x a b\n"))
    assert "unknown flag: from" in str(err("FROM scratch\nADD --from=x a b\n"))


def test_parse_duration():
    assert parse_duration("1h2m3.5s") == 3723500000000
    assert parse_duration("0") == 0 and parse_duration("1.5h") == 5400 * 10**9
    assert parse_duration("10us") == 10_000 and parse_duration("7ns") == 7 and parse_duration(".5s") == 5 * 10**8
    for bad in ("", "5", "1x", "s", "-"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_bytes_input_and_records():
    d = parse(b"FROM scratch\nLABEL a=\xc3\xa9\n")
    assert d.stages[0].instructions[0].pairs == [("a", "é")]
    assert df.Instruction("RUN", 1, 1, "RUN x") == df.Instruction("RUN", 1, 1, "RUN x")
