"""Deep merge of manifest trees (``extends``, overrides) and of request bodies. Pure.

:func:`deep_merge`: mappings merge recursively; a ``None`` (YAML ``null``) in
the overlay deletes the key; any other value replaces. Lists are replaced whole.

:func:`patch_list` changes one rule list by its items' names: *patch* maps a
name to a change. For a name the list has, the change is deep-merged into that
item (``None`` removes the item); a new name adds ``{"name": key, **change}``
at the end. A change may say ``$before: <name>`` or ``$after: <name>``
(:data:`PLACE_KEYS`, consumed here, never in the result) to place its item,
new or existing, right before or after another one; several placed at one
item keep the patch's order. Nothing raises: each mistake (a removal or a
placement naming no item, both keys at once, a placement cycle, a ``name``
other than the key) is returned as a problem at a key relative to the patch,
and the item is still kept (at the end when it cannot be placed). Linear in
the sizes of the list and the patch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PLACE_KEYS", "Patched", "deep_merge", "item_name", "patch_list"]

PLACE_KEYS = ("$before", "$after")


def deep_merge(base: Any, over: Any) -> Any:
    """Merge *over* onto *base*: mappings recursively, ``None`` deletes, others replace."""
    if not (isinstance(base, Mapping) and isinstance(over, Mapping)):
        return over
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif key in out:
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Patched:
    """The result of :func:`patch_list`."""

    items: list[Any] = field(default_factory=list)
    # per item of *items*: (its index in the patched list or None, its patch key or None)
    sources: list[tuple[int | None, str | None]] = field(default_factory=list)
    problems: list[tuple[tuple[str, ...], str]] = field(default_factory=list)  # (key, text)
    unchanged: list[str] = field(default_factory=list)  # patch keys that change nothing


@dataclass
class _Entry:
    value: Any
    index: int | None  # in the patched list
    key: str | None = None  # in the patch
    anchor: tuple[str, str] | None = None  # ($before or $after, the name)
    seq: int = 0  # the change's place in the patch


def item_name(item: Any) -> str | None:
    """The ``name`` of a list item, when it has a string one."""
    name = item.get("name") if isinstance(item, Mapping) else None
    return name if isinstance(name, str) else None


def patch_list(items: Sequence[Any], patch: Mapping[Any, Any]) -> Patched:
    """*items* changed by *patch* (see the module docstring)."""
    out = Patched()
    entries = [_Entry(item, i) for i, item in enumerate(items)]
    named: dict[str, _Entry] = {}
    for item in entries:
        name = item_name(item.value)
        if name is not None:
            named.setdefault(name, item)
    removed: set[int] = set()
    for seq, (raw, change) in enumerate(patch.items()):
        key = str(raw)
        entry = named.get(key)
        if change is None:
            if entry is None:
                out.problems.append(((key,), f"null removes an item, but none is named {key!r}"))
            else:
                removed.add(id(entry))
            continue
        _apply(out, entries, named, entry, key, change).seq = seq
    kept = [e for e in entries if id(e) not in removed]
    _order(out, kept)
    return out


def _apply(out: Patched, entries: list[_Entry], named: dict[str, _Entry],
           entry: _Entry | None, key: str, change: Any) -> _Entry:
    """Merge *change* into *entry* (or add it as a new item named *key*)."""
    body = change
    anchor = None
    if isinstance(change, Mapping):
        body = {k: v for k, v in change.items() if k not in PLACE_KEYS}
        anchor = _anchor(out, key, change)
        if "name" in body and body["name"] != key:
            out.problems.append(((key, "name"), f"the name of this item is its key {key!r}; "
                                 "leave 'name' out"))
        body.pop("name", None)
    if entry is None:
        value = {"name": key, **body} if isinstance(body, Mapping) else body
        entry = _Entry(value, None)
        entries.append(entry)
        named[key] = entry
    else:
        value = deep_merge(entry.value, body)
        if value == entry.value and anchor is None:
            out.unchanged.append(key)
        entry.value = value
    entry.key, entry.anchor = key, anchor
    return entry


def _anchor(out: Patched, key: str, change: Mapping[Any, Any]) -> tuple[str, str] | None:
    given = [(k, change[k]) for k in PLACE_KEYS if k in change]
    if len(given) > 1:
        out.problems.append(((key,), "give one of $before and $after, not both"))
    if not given:
        return None
    place, target = given[0]
    if not isinstance(target, str):
        out.problems.append(((key, place), "must be the name of another item"))
        return None
    return place, target


def _order(out: Patched, kept: list[_Entry]) -> None:
    """Items without a placement in order; each placed one next to its target."""
    names: dict[str, _Entry] = {}
    for entry in kept:
        name = entry.key or item_name(entry.value)
        if name is not None:
            names.setdefault(name, entry)  # the first of a duplicated name, as patches do
    before: dict[int, list[_Entry]] = {}
    after: dict[int, list[_Entry]] = {}
    roots = [e for e in kept if e.anchor is None]
    for entry in sorted((e for e in kept if e.anchor is not None), key=lambda e: e.seq):
        place, target = entry.anchor or ("", "")
        anchor = names.get(target)
        if anchor is None:
            out.problems.append(((str(entry.key), place), f"no item is named {target!r}"))
            roots.append(entry)
        else:
            (before if place == "$before" else after).setdefault(id(anchor), []).append(entry)
    placed = _emit(roots, before, after)
    done = {id(e) for e in placed}
    for entry in kept:
        if id(entry) not in done:
            out.problems.append(((str(entry.key), (entry.anchor or ("$after", ""))[0]),
                                 "placement cycle: the items it names are placed "
                                 "relative to it"))
            placed.append(entry)
    out.items = [e.value for e in placed]
    out.sources = [(e.index, e.key) for e in placed]


def _emit(roots: list[_Entry], before: dict[int, list[_Entry]],
          after: dict[int, list[_Entry]]) -> list[_Entry]:
    """Depth first, without recursion: what goes before an item, the item, what after."""
    placed: list[_Entry] = []
    stack: list[tuple[_Entry, bool]] = [(e, False) for e in reversed(roots)]
    while stack:
        entry, expanded = stack.pop()
        if expanded:
            placed.append(entry)
            continue
        tasks = [*((e, False) for e in before.get(id(entry), ())), (entry, True),
                 *((e, False) for e in after.get(id(entry), ()))]
        stack.extend(reversed(tasks))
    return placed
