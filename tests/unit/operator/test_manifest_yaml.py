"""`keyplane render`'s YAML writer gives PyYAML's safe dumper's bytes, only faster."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from typing import Any

import pytest
import yaml
from keyplane_op_helpers import QUICKSTART

from keyplane import manifest_yaml
from keyplane.render import run_render
from keyplane.settings import Settings

PYYAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def pyyaml(documents: list[Any]) -> str:
    """What render wrote before ManifestDumper: PyYAML's own safe dumper, same options."""
    return yaml.dump_all(documents, Dumper=PYYAML_DUMPER, sort_keys=True, explicit_start=True, width=120)


# Scalars whose quoting depends on the resolver: each would read back as another type if written plain.
TRICKY = ["", "true", "False", "yes", "no", "on", "null", "~", "1", "-1", "0x1f", "0o17", "1_000", "1.5",
          ".inf", "-.Inf", ".NaN", "2026-12-01", "2026-12-01T00:00:00Z", "12:30:45", "=", "<<", "- a",
          "a: b", "#x", "x #y", "@x", "`x", "%x", "!x", "&x", "*x", "|", ">", "'", '"', "a\nb", "a\n", " a",
          "a ", "\t", "é", "中文", "\u2028", "\x85", "x" * 300, "a b " * 50]


def test_quickstart_render_is_byte_identical_to_pyyaml() -> None:
    out, err = io.StringIO(), io.StringIO()
    run_render([str(QUICKSTART)], Settings(), datetime(2026, 12, 1, tzinfo=UTC), out, err, offline=True)
    documents = list(yaml.safe_load_all(out.getvalue()))
    assert len(documents) == 10
    assert manifest_yaml.dump_all(documents) == pyyaml(documents) == out.getvalue()


@pytest.mark.parametrize("value", TRICKY)
def test_scalars_needing_quotes_are_written_as_pyyaml_writes_them(value: str) -> None:
    documents = [{"k": value, value: [value, {"nested": value}]}]
    written = manifest_yaml.dump_all(documents)
    assert written == pyyaml(documents)
    assert yaml.safe_load(written) == documents[0]


def test_every_plain_type_and_the_ones_left_to_pyyaml() -> None:
    shared = {"same": "object"}
    documents: list[Any] = [
        {"str": "s", "int": 7, "big": 10**30, "neg": -3, "true": True, "false": False, "none": None,
         "float": 1.5, "nan": float("nan"), "inf": float("-inf"), "date": date(2026, 12, 1),
         "datetime": datetime(2026, 12, 1, 1, 2, 3, tzinfo=UTC), "bytes": b"\x00\xff", "empty": {}, "list": [],
         "nested": [[1, [2, {"a": None}]], {"b": [True]}]},
        {3: "int key", 1: "sorted with", 2: "the others"},
        {"mixed": {1: "a", "b": 2}},  # keys that cannot be sorted stay in insertion order
        {"first": shared, "second": shared, "list": [shared]},  # one object three times: anchor + aliases
        ["a list", "as the document"],
        "a scalar document",
        None,
    ]
    assert manifest_yaml.dump_all(documents) == pyyaml(documents)


def test_one_object_twice_becomes_an_alias_only_within_a_document() -> None:
    shared = {"a": 1}
    written = manifest_yaml.dump_all([{"x": shared, "y": shared}, {"z": shared}])
    assert written == "---\nx: &id001\n  a: 1\ny: *id001\n---\nz:\n  a: 1\n"
    assert written == pyyaml([{"x": shared, "y": shared}, {"z": shared}])


def test_subclasses_of_the_plain_types_go_to_pyyaml() -> None:
    class Tagged(str):
        pass

    with pytest.raises(yaml.representer.RepresenterError):  # as PyYAML's safe dumper refuses them
        manifest_yaml.dump_all([{"k": Tagged("v")}])
    with pytest.raises(yaml.representer.RepresenterError):
        pyyaml([{"k": Tagged("v")}])


def test_load_all_reads_every_document() -> None:
    assert manifest_yaml.load_all("---\na: 1\n---\n- b\n---\n") == [{"a": 1}, ["b"], None]


def test_the_utf8_stream_is_the_text_stream_encoded() -> None:
    documents = [{"name": "Zoë 中文 \u2028", "data": {"k": "v" * 300}}, {"list": TRICKY}]
    assert manifest_yaml.dump_all_utf8(documents) == manifest_yaml.dump_all(documents).encode("utf-8")


def test_plain_documents_of_every_plain_type_are_written_as_pyyaml_writes_them() -> None:
    """Documents of dict, list, str, int, bool and None only: the event path (no PyYAML nodes)."""
    documents: list[Any] = [
        {"t": True, "f": False, "n": None, "zero": 0, "neg": -12, "big": 10**30, "empty": {}, "none": [],
         "nested": [[1, [True, None]], {"x": ["y", {}], "z": []}], "quoted": ["1", "true", "null", "~", ""]},
        {1: "int keys", 2: "sorted", 0: "too"},
        {1: "mixed keys", "b": 2},  # cannot be sorted: insertion order
        [], {}, "a scalar", 7, None, True, ["top", "level", "list"],
    ]
    assert manifest_yaml.dump_all(documents) == pyyaml(documents)
    assert manifest_yaml.dump_all_utf8(documents) == pyyaml(documents).encode()


READ_CASES = {
    "plain": "a: 1\nb: [x, 'y', \"z\"]\nc: {d: null, e: ~, f: '', g: yes, h: 'no', i: 0x1f, j: 1.5, k: .inf}\n",
    "times and bools": "t: 2026-12-01T00:00:00Z\nd: 2026-12-01\nb: [true, False, on, OFF]\nn: [-1, +2, 0o17, 1_000]\n",
    "multi-line": "s: |\n  line 1\n  line 2\nf: >\n  folded\n  text\nq: \"a\\nb\"\n",
    "documents": "---\na: 1\n---\n---\n- 1\n- [2, {3: 4}]\n...\n--- just a scalar\n",
    "comments only": "# nothing here\n",
    "empty": "",
    "anchors": "base: &b {x: 1}\nuse: *b\nlist: &l [1]\nagain: *l\n",
    "merge keys": "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n",
    "explicit tags": "s: !!str 123\nb: !!binary aGVsbG8=\nset: !!set {a, b}\nf: !!float 1\ntagged: ! 12\n",
    "duplicate keys": "a: 1\na: 2\n",
    "non-string keys": "1: one\ntrue: yes\nnull: nothing\n2026-01-01: day\n",
}
PYYAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def pyyaml_load(text: str) -> list[Any]:
    """What render read before manifest_yaml.load_all: PyYAML's safe loader, LibYAML's when available."""
    return list(yaml.load_all(text, Loader=PYYAML_LOADER))


@pytest.mark.parametrize("text", READ_CASES.values(), ids=READ_CASES.keys())
def test_reading_gives_what_pyyaml_gives(text: str) -> None:
    assert manifest_yaml.load_all(text) == pyyaml_load(text)


@pytest.mark.parametrize("text", ["a: [1, 2\n", "a: b: c\n", "? [a]\n: 1\n", "- &a x\n- *b\n", "\tkey: 1\n",
                                  "x: =\n", "a: 1\n---\n- [unclosed\n"])
def test_reading_bad_yaml_raises_pyyaml_s_error(text: str) -> None:
    with pytest.raises(yaml.YAMLError) as ours:
        manifest_yaml.load_all(text)
    with pytest.raises(yaml.YAMLError) as theirs:
        pyyaml_load(text)
    assert str(ours.value) == str(theirs.value)


def test_the_examples_are_read_without_pyyaml_s_loader() -> None:
    """Every example manifest takes the fast path (built from parser events), and gives PyYAML's documents."""
    for path in sorted(QUICKSTART.parent.rglob("*.yaml")):
        text = path.read_text()
        assert manifest_yaml._plain_documents(text) == pyyaml_load(text), path


def test_one_stream_with_lookalike_values_of_every_type() -> None:
    # One event is kept per scalar value for the whole stream: True, 1, "1" and "true" must each keep their own.
    lookalikes: list[Any] = [True, 1, "1", "true", False, 0, "0", "false", None, "null", "", 10**30, -1, "-1"]
    documents: list[Any] = [{"values": lookalikes, "again": list(reversed(lookalikes))},
                            {str(i): value for i, value in enumerate(lookalikes)},
                            [{"k": value} for value in lookalikes + TRICKY], *lookalikes]
    written = manifest_yaml.dump_all(documents)
    assert written == pyyaml(documents)
    assert list(yaml.safe_load_all(written)) == documents
