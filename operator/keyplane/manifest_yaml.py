"""YAML for `keyplane render`: reading manifests and writing the rendered objects, fast.

LibYAML (PyYAML's C extension) parses and emits, but PyYAML still runs Python for every node: the
representer turns each value into a node, its serializer calls back into Python four times per node
(the resolver, twice per scalar, to decide whether `"true"` or `"1"` must be quoted, and the path
resolvers), and only then does LibYAML get an event. For a render of 1000 objects that is ~140 000
nodes, and it was most of the time spent writing.

:func:`dump_all` gives the bytes of PyYAML's safe dumper (same options) with less Python:

* a document made only of dict, list, str, int, bool and None (every document render writes) goes
  straight to the events PyYAML's serializer would make for it (`_plain_document_events`), LibYAML
  still doing all of the writing (style, quoting, folding, indentation);
* any other document (other types, or a dict or list occurring twice, which PyYAML writes once with an
  anchor and then as aliases) goes through PyYAML's representer and serializer, with
  :class:`ManifestDumper`'s shortcuts: a representer for the plain types, and the resolver's answer for
  a plain scalar remembered per value (it depends on nothing else: no path resolvers are set), a quoted
  scalar being a string (PyYAML's answer too).

`tests/unit/operator/test_manifest_yaml.py` checks that the output is byte-identical to PyYAML's.
"""

from __future__ import annotations

import contextlib
import io
from typing import IO, Any

import yaml
from yaml.events import (
    DocumentEndEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# LibYAML when PyYAML was built with it; PyYAML's pure-Python parser and emitter otherwise.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

_STR, _INT, _BOOL, _NULL = ("tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:bool",
                            "tag:yaml.org,2002:null")
_SEQ, _MAP = "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_PLAIN = (True, False)  # the resolver's question: which tag would this text have, written plain?


class ManifestDumper(_SafeDumper):  # type: ignore[misc,valid-type]
    """`yaml.SafeDumper` (LibYAML's when available) producing the same bytes with less Python per node."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # tag for a plain scalar -> the tag it resolves to; None when path resolvers make it depend on more.
        self._plain_tags: dict[str, str] | None = None if self.yaml_path_resolvers else {}

    @property
    def plain_tags(self) -> dict[str, str]:
        """The resolver's answers so far (empty with path resolvers: then nothing is remembered)."""
        return self._plain_tags if self._plain_tags is not None else {}

    def represent_data(self, data: Any) -> Node:
        kind = type(data)
        if kind is str:
            return ScalarNode(_STR, data, style=self.default_style)
        if (kind is dict or kind is list) and self.default_flow_style is not None:
            return self._represent_collection(data)
        if kind is bool:
            return ScalarNode(_BOOL, "true" if data else "false", style=self.default_style)
        if kind is int:
            return ScalarNode(_INT, str(data), style=self.default_style)
        if data is None:
            return ScalarNode(_NULL, "null", style=self.default_style)
        return super().represent_data(data)  # type: ignore[no-any-return]

    def _represent_collection(self, data: dict[Any, Any] | list[Any]) -> Node:
        # What BaseRepresenter does for a dict or list: remember the node by the object's id (a second
        # occurrence becomes an alias), keep the object alive for as long as that id is in use.
        known: Node | None = self.represented_objects.get(id(data))
        if known is not None:
            return known
        self.object_keeper.append(data)
        represent, style = self.represent_data, self.default_style
        value: list[Any] = []
        node: Node
        # Strings (most keys and values) are made inline; the node is registered before its children are.
        if isinstance(data, dict):
            node = MappingNode(_MAP, value, None, None, self.default_flow_style)
            self.represented_objects[id(data)] = node
            items = list(data.items())
            if self.sort_keys:
                with contextlib.suppress(TypeError):  # keys of mixed types: insertion order, as PyYAML does
                    items = sorted(items)
            value.extend([(ScalarNode(_STR, key, None, None, style) if type(key) is str else represent(key),
                           ScalarNode(_STR, item, None, None, style) if type(item) is str else represent(item))
                          for key, item in items])
        else:
            node = SequenceNode(_SEQ, value, None, None, self.default_flow_style)
            self.represented_objects[id(data)] = node
            value.extend([ScalarNode(_STR, item, None, None, style) if type(item) is str else represent(item)
                          for item in data])
        return node

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
        plain_tags = self._plain_tags
        if kind is ScalarNode and plain_tags is not None:
            if not implicit[0]:
                return _STR  # a quoted scalar is a string (PyYAML's answer without path resolvers)
            tag = plain_tags.get(value)
            if tag is None:
                tag = plain_tags[value] = super().resolve(kind, value, implicit)
            return tag
        return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]


def load_all(text: str) -> list[Any]:
    """Every document of a YAML stream (safe types only): what `yaml.safe_load_all` gives, errors included.

    Most manifests are plain mappings, lists and scalars: those are built straight from the parser's events
    (`_plain_documents`), without PyYAML's nodes and the composer's calls back into Python per node (half
    of the reading). Any other stream (anchors, explicit tags, merge keys, ...) or any error is read again by
    PyYAML's own loader, which then gives its result or raises its error.
    """
    try:
        return _plain_documents(text)
    except Exception:  # PyYAML's loader decides: its result, or its own error
        return list(yaml.load_all(text, Loader=_SafeLoader))


class _NotPlainInput(Exception):
    """A construct `_plain_documents` leaves to PyYAML's loader."""


# Scalar tags built by SafeConstructor from the text alone (others, like `<<` merge keys, need more).
_SCALAR_TAGS = frozenset({"tag:yaml.org,2002:null", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int",
                          "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"})


def _plain_documents(text: str) -> list[Any]:
    loader = _SafeLoader(text)
    try:
        next_event, resolve = loader.get_event, loader.resolve
        constructors = loader.yaml_constructors
        plain_tags: dict[str, str] = {}

        def value_of(event: Any) -> Any:
            kind = event.__class__
            if event.anchor is not None or (event.tag is not None and event.tag != "!"):
                raise _NotPlainInput  # anchors and explicit tags: PyYAML's composer and constructor
            if kind is ScalarEvent:
                text = event.value
                if not event.implicit[0]:
                    return text  # quoted, or the non-specific tag: a string
                tag = plain_tags.get(text)
                if tag is None:
                    tag = plain_tags[text] = resolve(ScalarNode, text, _PLAIN)
                if tag == _STR:
                    return text
                if tag not in _SCALAR_TAGS:
                    raise _NotPlainInput
                return constructors[tag](loader, ScalarNode(tag, text))
            if kind is MappingStartEvent:
                mapping: dict[Any, Any] = {}
                event = next_event()
                while event.__class__ is not MappingEndEvent:
                    key = value_of(event)
                    mapping[key] = value_of(next_event())  # an unhashable key raises: PyYAML's error then
                    event = next_event()
                return mapping
            if kind is SequenceStartEvent:
                sequence: list[Any] = []
                event = next_event()
                while event.__class__ is not SequenceEndEvent:
                    sequence.append(value_of(event))
                    event = next_event()
                return sequence
            raise _NotPlainInput  # an alias

        documents: list[Any] = []
        next_event()  # StreamStartEvent
        while next_event().__class__ is DocumentStartEvent:
            documents.append(value_of(next_event()))
            next_event()  # DocumentEndEvent
        return documents
    finally:
        loader.dispose()


class _NotPlain(Exception):
    """The document holds another type than dict, list, str, int, bool and None, or one dict or list twice."""


# Events hold no position and the emitter only reads them: one instance serves every occurrence.
_DOCUMENT_START, _DOCUMENT_END = DocumentStartEvent(explicit=True), DocumentEndEvent(explicit=False)
_MAPPING_START, _MAPPING_END = MappingStartEvent(None, _MAP, True, flow_style=False), MappingEndEvent()
_SEQUENCE_START, _SEQUENCE_END = SequenceStartEvent(None, _SEQ, True, flow_style=False), SequenceEndEvent()


def _plain_document_events(dumper: ManifestDumper, document: Any, scalars: dict[Any, ScalarEvent]) -> list[Event]:
    """The events PyYAML's representer and serializer give for a plain document, made without the nodes.

    Per scalar that saves a node, two resolver calls and two path-resolver calls from LibYAML's serializer
    back into Python: a quarter of the writing. A scalar's event depends on its value and type only, so
    ``scalars`` keeps one per value over the whole stream (keys and most values repeat from document to
    document). Raises _NotPlain for anything else (another type, or an object occurring twice, which PyYAML
    writes as an anchor and aliases), left to PyYAML's own path.
    """
    resolved, plain_tags = dumper.resolve, dumper.plain_tags  # ManifestDumper.resolve remembers its answers

    def string_event(text: str) -> ScalarEvent:
        event = scalars[text] = ScalarEvent(None, _STR, (resolved(ScalarNode, text, _PLAIN) == _STR, True), text)
        return event

    def other_event(value: Any) -> ScalarEvent:
        kind = type(value)
        text, tag = ("true" if value else "false", _BOOL) if kind is bool else (
            (str(value), _INT) if kind is int else ("null", _NULL))
        event = ScalarEvent(None, tag, (plain_tags.get(text, "") == tag or resolved(ScalarNode, text, _PLAIN) == tag,
                                        False), text)
        scalars[(kind, value)] = event  # keyed with its type: True == 1, and a str key never is a tuple
        return event

    seen: set[int] = set()
    events: list[Event] = [_DOCUMENT_START]
    add = events.append

    def walk(value: Any) -> None:
        kind = type(value)
        if kind is str:
            add(scalars.get(value) or string_event(value))
        elif kind is dict or kind is list:
            if id(value) in seen:
                raise _NotPlain
            seen.add(id(value))
            if kind is dict:
                add(_MAPPING_START)
                items = list(value.items())
                try:  # noqa: SIM105  (contextlib.suppress: two more Python calls per dict)
                    items = sorted(items)
                except TypeError:  # keys of mixed types: insertion order, as PyYAML does
                    pass
                for key, item in items:
                    if type(key) is str:  # inline: most keys and values are strings
                        add(scalars.get(key) or string_event(key))
                    else:
                        walk(key)
                    if type(item) is str:
                        add(scalars.get(item) or string_event(item))
                    else:
                        walk(item)
                add(_MAPPING_END)
            else:
                add(_SEQUENCE_START)
                for item in value:
                    walk(item)
                add(_SEQUENCE_END)
        elif kind is bool or kind is int or value is None:
            add(scalars.get((kind, value)) or other_event(value))
        else:
            raise _NotPlain

    walk(document)
    add(_DOCUMENT_END)
    return events


def _dump_all(documents: list[Any], stream: IO[Any], encoding: str | None) -> None:
    dumper = ManifestDumper(stream, sort_keys=True, explicit_start=True, width=120, encoding=encoding)
    dumper.open()
    emit = dumper.emit
    scalars: dict[Any, ScalarEvent] = {}  # a str, or (type, value) for the others -> its event
    for document in documents:
        try:
            events = _plain_document_events(dumper, document, scalars)
        except _NotPlain:
            dumper.represent(document)  # PyYAML's representer and serializer (ManifestDumper's shortcuts)
            continue
        for event in events:
            emit(event)
    dumper.close()


def dump_all(documents: list[Any]) -> str:
    """The documents as one YAML stream: keys sorted, each document after `---`, lines up to 120 wide;
    the bytes `yaml.dump_all(documents, Dumper=yaml.CSafeDumper, sort_keys=True, explicit_start=True,
    width=120)` gives."""
    stream = io.StringIO()
    _dump_all(documents, stream, None)
    return stream.getvalue()


def dump_all_utf8(documents: list[Any]) -> bytes:
    """:func:`dump_all` as UTF-8 bytes, straight from the emitter (no round trip through str)."""
    stream = io.BytesIO()
    _dump_all(documents, stream, "utf-8")
    return stream.getvalue()
