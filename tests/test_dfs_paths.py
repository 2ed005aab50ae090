import pytest

from minijet.dfs import paths
from minijet.errors import InvalidArgument


@pytest.mark.parametrize("raw,norm", [
    ("/", "/"), ("//", "/"), ("/a//b/", "/a/b"), ("/a/b", "/a/b"), ("/a b/ü", "/a b/ü"),
    ("/..a/b..", "/..a/b.."),
])
def test_normalize(raw, norm):
    assert paths.normalize(raw) == norm


@pytest.mark.parametrize("bad,why", [
    ("", "absolute"), ("a/b", "absolute"), ("/a/../b", "'..'"), ("/a/./b", "'.'"),
    ("/a\0b", "NUL"), ("/" + "x" * 256, "longer than 255"),
    ("/" + "/".join(["abcdefg"] * 600), "longer than 4096"),
])
def test_refused_with_clear_message(bad, why):
    with pytest.raises(InvalidArgument, match="invalid path") as e:
        paths.normalize(bad)
    assert why in str(e.value)


def test_component_limit_counts_bytes():
    paths.normalize("/" + "x" * 255)
    with pytest.raises(InvalidArgument):
        paths.normalize("/" + "é" * 128)  # 256 bytes in UTF-8


def test_helpers():
    assert paths.parent("/a/b") == "/a" and paths.parent("/a") == "/" and paths.parent("/") == "/"
    assert paths.name("/a/b") == "b"
    assert paths.join("/", "a") == "/a" and paths.join("/a", "b") == "/a/b"
    assert paths.components("/") == [] and paths.components("/a/b") == ["a", "b"]
    assert paths.is_within("/a/b", "/a") and paths.is_within("/a", "/a")
    assert not paths.is_within("/ab", "/a") and paths.is_within("/x", "/")
