"""YAML for `keyplane render`: reading manifests and writing the rendered objects, fast.

LibYAML (PyYAML's C extension) parses and emits, but PyYAML still runs Python for every node: the
representer turns each value into a node, and the resolver is asked, twice per scalar, which tag a
plain value would resolve to (to decide whether `"true"` or `"1"` must be quoted). For a render of
1000 objects that is ~140 000 nodes, and it was most of the time spent writing.

:class:`ManifestDumper` is PyYAML's safe dumper with two shortcuts that give the same bytes:

* a representer for the plain trees render writes (dict, list, str, int, bool, None); any other type
  goes to PyYAML's own representer. Like PyYAML's, a dict or list that occurs twice in one document is
  written once with an anchor and then as an alias;
* the resolver's answer for a plain scalar is remembered per value (it depends on nothing else: this
  dumper has no path resolvers), and a quoted scalar is always a string (PyYAML's answer too).

`tests/unit/operator/test_manifest_yaml.py` checks that the output is byte-identical to PyYAML's.
"""

from __future__ import annotations

import contextlib
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# LibYAML when PyYAML was built with it; PyYAML's pure-Python parser and emitter otherwise.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

_STR, _INT, _BOOL, _NULL = ("tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:bool",
                            "tag:yaml.org,2002:null")
_SEQ, _MAP = "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"


class ManifestDumper(_SafeDumper):  # type: ignore[misc,valid-type]
    """`yaml.SafeDumper` (LibYAML's when available) producing the same bytes with less Python per node."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # tag for a plain scalar -> the tag it resolves to; None when path resolvers make it depend on more.
        self._plain_tags: dict[str, str] | None = None if self.yaml_path_resolvers else {}

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
    """Every document of a YAML stream (safe types only)."""
    return list(yaml.load_all(text, Loader=_SafeLoader))


def dump_all(documents: list[Any]) -> str:
    """The documents as one YAML stream: keys sorted, each document after `---`, lines up to 120 wide."""
    return yaml.dump_all(documents, Dumper=ManifestDumper, sort_keys=True, explicit_start=True, width=120)


def dump_all_utf8(documents: list[Any]) -> bytes:
    """:func:`dump_all` as UTF-8 bytes, straight from the emitter (no round trip through str)."""
    return yaml.dump_all(  # type: ignore[no-any-return]
        documents, Dumper=ManifestDumper, sort_keys=True, explicit_start=True, width=120, encoding="utf-8"
    )
