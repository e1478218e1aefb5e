"""dockyard.builder.shellexpand: cases from BuildKit's shell/envVarTest and wordsTest."""

import pytest

from dockyard.builder.shellexpand import (SUBSTITUTED, ShellExpandError, env_from_list, expand_word,
                                          expand_words)

ENV = {"PWD": "/home", "SHELL": "bash", "NULL": ""}
ERR = object()

# (input, expected) — BuildKit's envVarTest table, escape = "\"
WORD_CASES = [
    ("hello", "hello"),
    ("he'll'o", "hello"),
    ("he'llo", ERR),
    ("he\\'llo", "he'llo"),
    ("he\\\\'llo", ERR),
    ("abc\\tdef", "abctdef"),
    ('"abc\\tdef"', "abc\\tdef"),
    ('"abc\\\\tdef"', "abc\\tdef"),
    ("'abc\\tdef'", "abc\\tdef"),
    ("hello\\", "hello"),
    ("hello\\\\", "hello\\"),
    ('"hello', ERR),
    ('"hello\\"', ERR),
    ('"hel\'lo"', "hel'lo"),
    ("'hello", ERR),
    ("'hello\\'", "hello\\"),
    ("'hello\\there'", "hello\\there"),
    ("'hello\\\\there'", "hello\\\\there"),
    ('"\'\'"', "''"),
    ("$.", "$."),
    ("he$1x", "hex"),
    ("he$.x", "he$.x"),
    ("he$pwd.", "he."),
    ("he$PWD", "he/home"),
    ("he\\$PWD", "he$PWD"),
    ("he\\\\$PWD", "he\\/home"),
    ('"he\\$PWD"', "he$PWD"),
    ('"he\\\\$PWD"', "he\\/home"),
    ("\\${}", "${}"),
    ("\\${}aaa", "${}aaa"),
    ("he\\${}", "he${}"),
    ("he\\${}xx", "he${}xx"),
    ("${}", ERR),
    ("${}aaa", ERR),
    ("he${}", ERR),
    ("he${}xx", ERR),
    ("he${hi}", "he"),
    ("he${hi}xx", "hexx"),
    ("he${PWD}", "he/home"),
    ("he${.}", ERR),
    ("he${XXX:-000}xx", "he000xx"),
    ("he${PWD:-000}xx", "he/homexx"),
    ("he${XXX:-$PWD}xx", "he/homexx"),
    ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
    ("he${XXX:YYY}", ERR),
    ("he${XXX?}", ERR),
    ("he${XXX:?}", ERR),
    ("he${PWD?}", "he/home"),
    ("he${PWD:?}", "he/home"),
    ("he${NULL?}", "he"),
    ("he${NULL:?}", ERR),
    ("he${XXX:+${PWD}}xx", "hexx"),
    ("he${PWD:+${XXX}}xx", "hexx"),
    ("he${PWD:+${SHELL}}xx", "hebashxx"),
    ("he${XXX:+000}xx", "hexx"),
    ("he${PWD:+000}xx", "he000xx"),
    ("'he${XX}'", "he${XX}"),
    ('"he${PWD}"', "he/home"),
    ('"he\'$PWD\'"', "he'/home'"),
    ('"$PWD"', "/home"),
    ("'$PWD'", "$PWD"),
    ("'\\$PWD'", "\\$PWD"),
    ("'\"hello\"'", '"hello"'),
    ("'he\\$PWD'", "he\\$PWD"),
    ("he${PWD", ERR),
    ("he${PWD:=000}xx", ERR),
    ("he${PWD:+${PWD}:}xx", "he/home:xx"),
    ("he${XXX:-\\$PWD:}xx", "he$PWD:xx"),
    ("he${XXX:-\\${PWD}z}xx", "he${PWDz}xx"),
    ("안녕하세요", "안녕하세요"),
    ("안'녕'하세요", "안녕하세요"),
    ("안'녕하세요", ERR),
    ("안녕\\'하세요", "안녕'하세요"),
    ('"안녕\'하세요"', "안녕'하세요"),
    ("$ab", ""),
    ("${NULL-def}", ""),
    ("${NULL:-def}", "def"),
    ("${NULL+alt}", "alt"),
    ("${NULL:+alt}", ""),
    ("${XXX-'a b'}", "a b"),
    ("${XXX:-\"q $PWD\"}", "q /home"),
    ("$$", ""),  # $$ is a special parameter, unset here
    ("a$", "a$"),
    ("${", ERR),
    ("${:}", ERR),
    ("${{x}", ERR),
]


@pytest.mark.parametrize("word,expected", WORD_CASES)
def test_expand_word(word, expected):
    if expected is ERR:
        with pytest.raises(ShellExpandError):
            expand_word(word, ENV)
    else:
        assert expand_word(word, ENV) == expected


# BuildKit's wordsTest table (words joined with ",")
WORDS_ENV = {"hi": "hi", "space": "abc  def", "leading": "  ab c", "trailing": "ab c   "}
WORDS_CASES = [
    ("hello", "hello"),
    ("hello${hi}bye", "hellohibye"),
    ("hello${space}bye", "helloabc,defbye"),
    ('hello"${space}"bye', "helloabc  defbye"),
    ('hello "${space}"bye', "hello,abc  defbye"),
    ("hello${leading}def", "hello,ab,cdef"),
    ('hello"${leading}" def', "hello  ab c,def"),
    ('hello"${leading}"', "hello  ab c"),
    ("hello${leading}", "hello,ab,c"),
    ("hello${trailing}", "helloab,c"),
    ("hello${trailing}d", "helloab,c,d"),
    ('hello"${trailing}"d', "helloab c   d"),
    ('hel"lo${trailing}"', "helloab c   "),
    ('hello" there  "', "hello there  "),
    ("hello there", "hello,there"),
    ("hello\\ there", "hello there"),
    ('hello\\" there', 'hello",there'),
    ('hello"\\\\there"', "hello\\there"),
    ('hello"\\there"', "hello\\there"),
    ("hello'\\\\there'", "hello\\\\there"),
    ("hello'\\there'", "hello\\there"),
    ("hello'$there'", "hello$there"),
    ("80/tcp  443", "80/tcp,443"),
    ("a '' b", "a,b"),  # empty quotes make no word
]


@pytest.mark.parametrize("word,expected", WORDS_CASES)
def test_expand_words(word, expected):
    assert ",".join(expand_words(word, WORDS_ENV)) == expected


def test_words_unterminated_quote_is_an_error():
    with pytest.raises(ShellExpandError, match="double-quote"):
        expand_words('hello" there', WORDS_ENV)


def test_backtick_escape():
    assert expand_word("C:\\path`$x", {"x": "1"}, escape="`") == "C:\\path$x"
    assert expand_word("a`", {}, escape="`") == "a"
    assert expand_word('"a`"b"', {}, escape="`") == 'a"b'
    assert expand_word('"a\\$x"', {"x": "1"}, escape="`") == "a\\1"
    assert expand_words("a` b c", {}, escape="`") == ["a b", "c"]
    with pytest.raises(ValueError):
        expand_word("x", {}, escape="!")


def test_error_messages():
    with pytest.raises(ShellExpandError, match=r"failed to process '\$\{X:\?need X\}': X: need X"):
        expand_word("${X:?need X}", {})
    with pytest.raises(ShellExpandError, match="X: is not allowed to be unset"):
        expand_word("${X?}", {})
    with pytest.raises(ShellExpandError, match="X: is not allowed to be empty"):
        expand_word("${X:?}", {"X": ""})
    with pytest.raises(ShellExpandError, match="missing '}'"):
        expand_word("${X:-abc", {})
    with pytest.raises(ShellExpandError, match="bad substitution"):
        expand_word("${}", {})
    with pytest.raises(ShellExpandError, match=r"unsupported modifier \(#\)"):
        expand_word("${X#a}", {"X": "ab"})
    assert isinstance(ShellExpandError("x"), ValueError)


def test_names_and_env_forms():
    env = {"A_1": "x", "A": "y", "12": "z"}
    assert expand_word("$A_1-$A-${A}_1", env) == "x-y-y_1"
    assert expand_word("$12b", env) == "zb"
    assert expand_word("$a", env) == ""  # case-sensitive
    assert expand_word("$X", ["X=1=2", "Y"]) == "1=2"
    assert env_from_list(["A=1", "B", "A=3"]) == {"A": "3", "B": ""}


def test_no_recursive_expansion():
    assert expand_word("$A", {"A": "$B", "B": "no"}) == "$B"
    assert expand_words("$A", {"A": "'a b'"}) == ["'a", "b'"]


def test_substituted_instructions():
    assert {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
            "ARG", "ONBUILD"} == SUBSTITUTED
    assert not {"RUN", "CMD", "ENTRYPOINT", "SHELL", "HEALTHCHECK"} & SUBSTITUTED
