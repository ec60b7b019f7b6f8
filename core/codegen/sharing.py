"""One class (torch) or function (loom) per block definition, shared by every instance the
model calls, its differences as the class's parameters.

Each instance's body is written as code with its own values (the flavour's emitters, lines
unwrapped) and the texts are compared token by token. Instances whose code has the same shape
share one class. A promoted attribute becomes the parameter of its name where its value is
written as it is: found by writing the body again with the attribute changed and seeing which
literals change. Any other literal that differs between instances (the channels coming in)
becomes a parameter named after the argument it is (`in_channels`). Options a flavour leaves
out at their defaults are written where instances disagree (padding=2 beside padding=0), so
that they still share a class; instances that cannot share one get one each (`Name_2`)."""
from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass, replace

from .scopes import Call
from .script import emitting, literal

REQUIRED = object()  # a parameter without a default


class Mismatch(Exception):
    """An instance's code, written with other values, no longer fits its class."""


@dataclass
class Hooks:
    """What a flavour tells the sharing."""
    layer: object  # Layer -> its code as parts (torch: constructor, forward; loom: statements)
    call: object  # (Call, callee's Shared, {parameter: value}) -> parts
    localise: object  # (text, instance path) -> the text with the path written relatively
    slot_parts: tuple  # the parts where a parameter may stand
    positional: dict  # callee -> the names of its positional arguments
    reserved: set  # names a parameter must not take


@dataclass
class Shared:
    """A definition's code, shared by `members` (instance paths)."""
    block: str
    name: str  # the class / function name
    members: list
    params: list  # [(name, default or REQUIRED)], the required ones first
    parts: list  # per step, its parts' text with parameters as names (unwrapped)
    values: dict  # member path -> {parameter: value}
    forced: dict  # step index -> options written even at their defaults
    slots: dict  # (step, part, token) -> parameter name
    lexed: list  # the first member's tokens
    key: tuple  # the code's shape

    def first(self) -> dict:
        """parameter -> its first position."""
        out = {}
        for pos, name in sorted(self.slots.items()):
            out.setdefault(name, pos)
        return out


class Sharing:
    def __init__(self, plan, hooks: Hooks, name_of):
        """name_of: definition name ("Dense", or "Dense_2" for the second class of one)
        -> its class / function name, unique in the script."""
        self.scopes, self.hooks = plan.scopes, hooks
        self.layers = {layer.id: layer for layer in plan.layers}
        self.defs = plan.scopes.defs
        self.of: dict[str, Shared] = {}  # instance path -> its class
        self.shared: list[Shared] = []  # callees before callers
        paths: dict[str, list] = {}
        for call in plan.scopes.calls():
            paths.setdefault(call.block, []).append(call.path)
        for block in self._order(paths):
            for k, group in enumerate(self._share(block, paths[block])):
                group.name = name_of(f"{block}_{k + 1}" if k else block)
                self.shared.append(group)
                self.of.update({path: group for path in group.members})

    def _order(self, blocks) -> list:
        """The definitions in `blocks`, those used inside another first."""
        order = []

        def visit(name):
            for node in self.defs[name].body.nodes.values():
                if node.kind == "Block" and node.attrs.get("block") not in order:
                    visit(node.attrs["block"])
            if name not in order:
                order.append(name)
        for name in blocks:
            visit(name)
        return [name for name in order if name in blocks]

    # ---- writing instances --------------------------------------------------------------------
    def _emit(self, path, overrides=None, forced=None) -> list:
        """The instance's body as code: per step, its parts."""
        steps = []
        for i, step in enumerate(self.scopes.bodies[path].steps):
            with emitting((forced or {}).get(i, ()), wrap=False):
                if isinstance(step, Call):
                    values = self.values(step.path, overrides)
                    parts = self.hooks.call(step, self.of[step.path], values)
                else:
                    parts = self.hooks.layer(_overridden(step, overrides))
            steps.append([self.hooks.localise(part, path) for part in parts])
        return steps

    def values(self, path, overrides=None) -> dict:
        """The arguments instance `path` is called with (its attributes overridden so)."""
        shared = self.of[path]
        if not overrides or not any(f.startswith(path + "/") for f in overrides):
            return shared.values[path]
        lexed = _lex(self._emit(path, overrides, shared.forced))
        if not self._fits(shared, lexed):
            raise Mismatch(path)
        return self._read(shared, lexed)

    def _fits(self, shared, lexed) -> bool:
        return _key(lexed, self.hooks.slot_parts) == shared.key and all(
            _at(lexed, pos).string == tok.string for pos, tok in _literals(shared.lexed)
            if pos not in shared.slots)

    # ---- one definition -----------------------------------------------------------------------
    def _share(self, block, paths) -> list[Shared]:
        plain = {p: self._emit(p) for p in paths}
        forced = _forced(plain)
        emitted = {p: self._emit(p, forced=forced) for p in paths} if forced else plain
        lexed = {p: _lex(steps) for p, steps in emitted.items()}
        groups: dict = {}
        for p in paths:
            groups.setdefault(_key(lexed[p], self.hooks.slot_parts), []).append(p)
        return [self._make(block, members, emitted, lexed, forced, key)
                for key, members in groups.items()]

    def _make(self, block, members, emitted, lexed, forced, key) -> Shared:
        rep = members[0]
        slots, promoted = {}, []
        for param in self.defs[block].params:
            found = self._promoted(block, param, members, lexed, forced)
            if found and not set(found) & set(slots):
                slots.update({pos: param for pos in found})
                promoted.append(param)
        derived = self._derived(rep, members, lexed, slots, set(promoted))
        taken = set(self.hooks.reserved) | self.scopes.bodies[rep].names()
        raws = [*promoted, *dict.fromkeys(derived.values())]
        names = {raw: _python_name(raw, taken) for raw in raws}
        slots.update(derived)
        slots = {pos: names[raw] for pos, raw in slots.items()}
        defaults = self.defs[block].params
        params = [(names[raw], REQUIRED) for raw in dict.fromkeys(derived.values())] + \
                 [(names[raw], defaults[raw]["default"]) for raw in promoted]
        shared = Shared(block, "", members, params, _render(emitted[rep], lexed[rep], slots),
                        {}, forced, slots, lexed[rep], key)
        shared.values = {m: self._read(shared, lexed[m]) for m in members}
        return shared

    @staticmethod
    def _read(shared, lexed) -> dict:
        """A member's arguments, in the order of the class's parameters."""
        first = shared.first()
        return {name: ast.literal_eval(_at(lexed, first[name]).string)
                for name, _ in shared.params}

    def _promoted(self, block, param, members, lexed, forced) -> list:
        """Where the promoted attribute's value is written as it is, in every member."""
        rep = members[0]
        targets = {m: list(self._targets(block, param, m)) for m in members}
        if not targets[rep] or any(f not in self.layers for m in members for f, _ in targets[m]):
            return []
        value = lambda m: self.layers[targets[m][0][0]].attrs.get(targets[m][0][1])  # noqa: E731
        sentinel = _sentinel(value(rep))
        if sentinel is None:
            return []
        overrides: dict = {}
        for flat_id, attr in targets[rep]:
            overrides.setdefault(flat_id, {})[attr] = sentinel
        try:
            alt = _lex(self._emit(rep, overrides, forced))
        except Exception:  # noqa: BLE001 (an emitter the changed value breaks: not written as is)
            return []
        if _key(alt, self.hooks.slot_parts) != _key(lexed[rep], self.hooks.slot_parts):
            return []
        changed = [pos for pos, tok in _literals(lexed[rep]) if _at(alt, pos).string != tok.string]
        verbatim = all(pos[1] in self.hooks.slot_parts
                       and _at(alt, pos).string == literal(sentinel) for pos in changed)
        agree = all(_at(lexed[m], pos).string == literal(value(m))
                    for m in members for pos in changed)
        return changed if changed and verbatim and agree else []

    def _targets(self, block, param, path):
        """(flat layer id, attribute) a promoted parameter of instance `path` sets."""
        defn = self.defs.get(block)
        for node_id, attr in defn.params.get(param, {}).get("targets", ()) if defn else ():
            spec = defn.body.nodes.get(node_id)
            if spec is None:
                continue
            if spec.kind == "Block":
                yield from self._targets(spec.attrs["block"], attr, f"{path}/{node_id}")
            else:
                yield f"{path}/{node_id}", attr

    def _derived(self, rep, members, lexed, taken, promoted) -> dict:
        """position -> raw name of each other literal that differs between members."""
        steps = self.scopes.bodies[rep].steps
        out, vectors = {}, {}
        for pos, tok in _literals(lexed[rep]):
            if pos in taken or pos[1] not in self.hooks.slot_parts:
                continue
            vector = tuple(_at(lexed[m], pos).string for m in members)
            if len(set(vector)) == 1:
                continue
            raw = _context(lexed[rep][pos[0]][pos[1]], pos[2], self.hooks.positional)
            owner = steps[pos[0]].name
            raw = raw or f"{owner}_value"
            if raw in promoted or vectors.setdefault(raw, vector) != vector:  # say whose
                raw = f"{owner}_{raw}"
                vectors.setdefault(raw, vector)
            out[pos] = raw
        return out


# ---- tokens -----------------------------------------------------------------------------------

def _lex(steps) -> list:
    """Per step, per part, its tokens."""
    return [[_tokens(part) for part in parts] for parts in steps]


def _tokens(text) -> list:
    if not text.strip():
        return []
    return [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
            if t.type != tokenize.ENDMARKER]


def _is_literal(tok) -> bool:
    if tok.type == tokenize.STRING:
        return tok.string[0] in "'\""  # not an f-string
    return tok.type == tokenize.NUMBER or (tok.type == tokenize.NAME
                                           and tok.string in ("True", "False", "None"))


def _literals(lexed):
    for i, parts in enumerate(lexed):
        for j, toks in enumerate(parts):
            for k, tok in enumerate(toks):
                if _is_literal(tok):
                    yield (i, j, k), tok


def _at(lexed, pos):
    return lexed[pos[0]][pos[1]][pos[2]]


def _key(lexed, slot_parts) -> tuple:
    """The code with the literals that may become parameters blanked out."""
    return tuple(tuple(tuple((t.type, "" if j in slot_parts and _is_literal(t) else t.string)
                             for t in toks) for j, toks in enumerate(parts)) for parts in lexed)


def _forced(emitted) -> dict:
    """step -> the options some members write and others leave out."""
    out = {}
    for i, per_member in enumerate(zip(*emitted.values())):
        names = [_keywords(parts) for parts in per_member]
        extra = set().union(*names) - set.intersection(*names)
        if extra:
            out[i] = extra
    return out


def _keywords(parts) -> set:
    found = set()
    for toks in map(_tokens, parts):
        found |= {a.string for a, b in zip(toks, toks[1:]) if a.type == tokenize.NAME
                  and b.string == "="}
    return found


def _context(toks, k, positional) -> str | None:
    """The name of the argument a literal is: its keyword, or its place in a known call."""
    if k >= 2 and toks[k - 1].string == "=" and toks[k - 2].type == tokenize.NAME:
        return toks[k - 2].string
    depth, commas = 0, 0
    for m in range(k - 1, -1, -1):
        s = toks[m].string
        if s in ")]}":
            depth += 1
        elif s in "([{" and depth:
            depth -= 1
        elif s in "([{":
            names = positional.get(_callee(toks, m)) if s == "(" else None
            return names[commas] if names and commas < len(names) else None
        elif s == "," and not depth:
            commas += 1
    return None


def _callee(toks, m) -> str:
    """The dotted name before the bracket at m (`nn.Conv2d`)."""
    names = []
    while m > 0 and (toks[m - 1].type == tokenize.NAME or toks[m - 1].string == "."):
        m -= 1
        names.insert(0, toks[m].string)
    return "".join(names)


def _render(steps, lexed, slots) -> list:
    """The steps' parts with the tokens at `slots` replaced by the parameter names."""
    out = []
    for i, parts in enumerate(steps):
        rendered = []
        for j, text in enumerate(parts):
            edits = [(lexed[i][j][k], name) for (a, b, k), name in slots.items()
                     if (a, b) == (i, j)]
            rendered.append(replace_tokens(text, edits))
        out.append(rendered)
    return out


def replace_tokens(text, edits) -> str:
    """`text` with each (token, new text) of `edits` written in place of the token."""
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    offset = lambda rc: starts[rc[0] - 1] + rc[1]  # noqa: E731
    for tok, name in sorted(edits, key=lambda e: e[0].start, reverse=True):
        text = text[:offset(tok.start)] + name + text[offset(tok.end):]
    return text


# ---- values -----------------------------------------------------------------------------------

def _overridden(layer, overrides):
    if not overrides or layer.id not in overrides:
        return layer
    return replace(layer, attrs={**layer.attrs, **overrides[layer.id]})


def _sentinel(value):
    """Another value of the same type, to see where a value is written."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float, str)):
        return value + {int: 7919, float: 0.7919, str: "_7919"}[type(value)]
    return None


def _python_name(raw, taken) -> str:
    from .plan import python_name
    return python_name(raw, taken)
