"""Which graph nodes each compiled kernel computes: an exact map from TVM kernels back to fx nodes.

The map is followed, not guessed. At import every Relax binding is renamed to a tag naming the
graphopt node it came from (``go7_conv1``: the converter of that exported node emitted it, and
``torch.export``'s ``from_node`` provenance leads back to the graphopt node). The names survive
layout conversion and legalization (they rewrite a binding's value and keep its variable's name);
bindings TVM inserts (layout transposes) carry none. ``KernelTracker``, a pass instrument, then
reads the module around ``FuseOps``/``FuseTIR``: a kernel left alone keeps its binding; a fused
kernel's function holds its members' bindings, except its outputs, which FuseOps renames, and
identical groups share the first one's function. Those are found in the module before FuseOps by
matching the function's body against it (same TIR functions reading the same values). FuseTIR
turns each call in ``main`` into one TIR kernel call, in the same order: the kernel the VM runs.
Nodes not named by any kernel were folded into constants at compile time, or are views.

>>> tracker = KernelTracker()   # PassContext(instruments=[tracker.instrument()]) around tvm.compile
>>> tracker.kernel_nodes        # {"fused_conv2d_add_relu": [["conv1", "relu"]], "transpose": [[]], ...}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import tvm
from tvm import relax

_TAG = re.compile(r"^go(\d+)_(\w*)$")


def tag_name(index: int, node: str | None) -> str:
    """The variable name carrying binding ``index``'s graphopt node (``""``: it came from none)."""
    return f"go{index}_{node or ''}"


def parse_tag(name: str) -> tuple[int, str | None] | None:
    """(index, node or None) of a tagged variable name; None for a name TVM gave."""
    match = _TAG.match(name)
    return (int(match.group(1)), match.group(2) or None) if match else None


def _bindings(func: Any) -> list[Any]:
    body = func.body
    return [b for block in getattr(body, "blocks", ()) for b in block.bindings]


def binding_owners(mod: tvm.IRModule, returned: Sequence[tuple[str | None, Any]]) -> dict[str, str | None]:
    """For each binding of ``main`` just after import, the graphopt node whose converter emitted it.

    ``returned`` lists, in conversion order, (graphopt node, the value its converter returned). The
    importer emits a node's bindings, ending with the one it returns, before it converts the next
    node: so each binding belongs to the first converter at or after it whose returned variable is
    a new binding (a converter that returns an earlier value, ``clone``, emitted nothing).
    """
    names = [b.var.name for b in _bindings(mod["main"])]
    position = {name: index for index, name in enumerate(names)}
    ends: list[tuple[int, str | None]] = []
    for node, value in returned:
        where = position.get(getattr(value, "name", None)) if isinstance(value, relax.Var) else None
        if where is not None and (not ends or where > ends[-1][0]):
            ends.append((where, node))
    owners: dict[str, str | None] = {}
    end = 0
    for index, name in enumerate(names):
        while end < len(ends) and ends[end][0] < index:
            end += 1
        owners[name] = ends[end][1] if end < len(ends) else None
    return owners


def tag_bindings(mod: tvm.IRModule, owners: dict[str, str | None]) -> tvm.IRModule:
    """``mod`` (updated in place) with each binding of ``main`` renamed ``tag_name(i, owner)``: the
    computation is unchanged, only variable names differ."""

    @relax.expr_functor.mutator
    class _Rename(relax.PyExprMutator):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(mod)
            self.count = 0

        def visit_var_binding_(self, binding: Any) -> None:
            value = self.visit_expr(binding.value)
            old = binding.var
            name = tag_name(self.count, owners.get(old.name))
            self.count += 1
            kind = relax.DataflowVar if isinstance(old, relax.DataflowVar) else relax.Var
            new = kind(name, old.ty)
            self.set_var_remap(old, new)
            self.builder_.emit_normalized(relax.VarBinding(new, value))

    mod["main"] = _Rename().visit_expr(mod["main"])
    return mod


def _tags(bindings: Iterable[Any]) -> dict[str, tuple[int, str | None]]:
    return {b.var.name: tag for b in bindings if (tag := parse_tag(b.var.name)) is not None}


def _kernel_callee(value: Any) -> str | None:
    """The callee of a kernel binding in ``main``: a ``call_tir``'s TIR function, or a fused Relax
    function FuseTIR turns into one; None for anything else (tuples, builtins, ``getitem``)."""
    if not isinstance(value, relax.Call):
        return None
    if isinstance(value.op, tvm.ir.Op) and value.op.name in ("relax.call_tir", "relax.call_tir_inplace"):
        callee = value.args[0]
        return callee.name_hint if isinstance(callee, tvm.ir.GlobalVar) else None
    if isinstance(value.op, tvm.ir.GlobalVar):
        return value.op.name_hint
    return None


class KernelTracker:
    """A pass instrument that records, for each kernel the compiled module calls, the graph nodes it computes.

    ``calls`` lists each kernel call of ``main`` in order with the nodes it computes; a call computing
    none (a transpose ConvertLayout added) has ``[]``. ``kernel_nodes`` groups them by kernel: a
    kernel shared by identical layers has one entry per call, each naming its own layer's nodes.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self._before_fuse: Any = None
        self._before_fuse_tir: list[tuple[str, list[str]]] | None = None

    @property
    def kernel_nodes(self) -> dict[str, list[list[str]]]:
        """Each kernel's calls, in call order, each as the graph nodes that call computes."""
        merged: dict[str, list[list[str]]] = {}
        for kernel, nodes in self.calls:
            merged.setdefault(kernel, []).append(list(nodes))
        return merged

    def instrument(self) -> tvm.instrument.PassInstrument:
        """The TVM pass instrument feeding this tracker (for ``PassContext(instruments=[...])``)."""
        tracker = self

        class _Instrument(tvm.instrument.PassInstrument):  # type: ignore[misc]
            def run_before_pass(self, mod: tvm.IRModule, info: Any) -> None:
                tracker.run_before_pass(mod, info)

            def run_after_pass(self, mod: tvm.IRModule, info: Any) -> None:
                tracker.run_after_pass(mod, info)

        return _Instrument()

    def run_before_pass(self, mod: tvm.IRModule, info: Any) -> None:
        if info.name == "FuseOps":
            self._before_fuse = mod
        elif info.name == "FuseTIR" and self._before_fuse is not None:
            self._before_fuse_tir = self._fused_calls(self._before_fuse, mod)

    def run_after_pass(self, mod: tvm.IRModule, info: Any) -> None:
        if info.name != "FuseTIR" or self._before_fuse_tir is None:
            return
        kernels = [k for b in _bindings(mod["main"]) if (k := _kernel_callee(b.value)) is not None]
        self.calls = _align(kernels, self._before_fuse_tir)
        self._before_fuse, self._before_fuse_tir = None, None

    @staticmethod
    def _fused_calls(before: tvm.IRModule, after: tvm.IRModule) -> list[tuple[str, list[str]]]:
        """Each kernel call of ``main`` after FuseOps with the graph nodes it computes, in order.

        A fused function's body keeps its members' tagged bindings except its outputs, which are
        renamed; identical groups share one function (the first group's body), and the later
        groups' bindings are gone whole. Both are found in the module before FuseOps by matching
        the function's body against it, from each output back through what it reads: same TIR
        function, same argument positions (``_Matcher``), each binding claimed once, in order.
        """
        functions = {
            gvar.name_hint: func
            for gvar, func in after.functions_items()
            if isinstance(func, relax.Function) and gvar.name_hint != "main"
        }
        matcher = _Matcher(before)
        main = _bindings(after["main"])
        matcher.claim_tagged(_tags(main))
        for func in functions.values():
            matcher.claim_tagged(_tags(_bindings(func)))
        result, seen = [], set()
        for binding in main:
            callee = _kernel_callee(binding.value)
            if callee is None:
                continue
            tags: dict[Any, tuple[int, str | None]]
            if callee not in functions:
                tags = dict(_tags([binding]))
            else:
                tags = matcher.group(functions[callee], repeat=callee in seen)
                seen.add(callee)
            nodes: list[str] = []
            for _, node in sorted(tags.values(), key=lambda tag: tag[0]):
                if node is not None and node not in nodes:
                    nodes.append(node)
            result.append((callee, nodes))
        return result


def _align(kernels: list[str], fused: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """FuseTIR's kernel calls with the nodes of the calls before it: one TIR call per call, in order.

    FuseTIR names each kernel after the function it fuses and drops calls whose result nothing
    uses (an unused ``argmax`` of ``max``), so the calls after it are the ones before it in order,
    less those: matched by name as a subsequence. If that fails (a renamed kernel), the same
    number of calls is zipped in order; else nothing is claimed (no map rather than a wrong one).
    """
    calls, position = [], 0
    for kernel in kernels:
        while position < len(fused) and fused[position][0] != kernel:
            position += 1
        if position == len(fused):
            break
        calls.append((kernel, fused[position][1]))
        position += 1
    else:
        return calls
    if len(kernels) == len(fused):
        return [(kernel, nodes) for kernel, (_, nodes) in zip(kernels, fused, strict=True)]
    return []


def _key(var: Any) -> int:
    """A variable's identity within one module (names repeat: TVM's passes reuse ``lv``)."""
    return int(var.__chandle__())


class _Matcher:
    """Finds a fused group's bindings among ``main``'s bindings before FuseOps.

    A binding a pass created inside a tagged one's computation carries no tag of its own: batch
    norm decomposed into a scale and shift leaves the tagged binding a tuple of new values. Such
    elementwise or broadcast bindings (TVM's ``op_pattern`` 0 or 1) take the tag of the non-kernel
    binding that reads them, back to the nearest tagged value; injective ones (a layout transpose
    ConvertLayout inserted) never do, and stay apart.
    """

    def __init__(self, before: tvm.IRModule) -> None:
        bindings = _bindings(before["main"])
        self.defs = {_key(b.var): b for b in bindings}
        self.by_callee: dict[str | None, list[int]] = {}  # in binding order
        for binding in bindings:
            self.by_callee.setdefault(_kernel_callee(binding.value), []).append(_key(binding.var))
        self.claimed: set[int] = set()
        self.tags = {_key(b.var): tag for b in bindings if (tag := parse_tag(b.var.name)) is not None}
        self._inherit(bindings, before)

    def claim_tagged(self, names: Iterable[str]) -> None:
        """Mark the tagged bindings still present after FuseOps (in ``main`` or a body) as placed."""
        wanted = set(names)
        self.claimed.update(k for k, b in self.defs.items() if b.var.name in wanted and k in self.tags)

    def _inherit(self, bindings: list[Any], mod: tvm.IRModule) -> None:
        def elementwise(binding: Any) -> bool:
            callee = _kernel_callee(binding.value)
            if callee is None or callee not in {g.name_hint for g in mod.get_global_vars()}:
                return False
            attrs = mod[callee].attrs
            return attrs is not None and "op_pattern" in attrs and int(attrs["op_pattern"]) <= 1

        for binding in reversed(bindings):
            tag = self.tags.get(_key(binding.var))
            if tag is None or _kernel_callee(binding.value) is not None:
                continue
            stack = [v for v in _read_vars(binding.value)]
            while stack:
                key = _key(stack.pop())
                inner = self.defs.get(key)
                if inner is None or key in self.tags or not elementwise(inner):
                    continue
                self.tags[key] = tag
                stack.extend(_call_args(inner.value))

    def group(self, func: Any, *, repeat: bool) -> dict[int, tuple[int, str | None]]:
        """The tagged bindings of one call of ``func``: its body's (not for a ``repeat``) and its outputs'."""
        body_bindings = _bindings(func)
        body = {_key(b.var): b for b in body_bindings}
        found: dict[int, tuple[int, str | None]] = {}
        if not repeat:
            found.update((_key(b.var), tag) for b in body_bindings if (tag := parse_tag(b.var.name)) is not None)
        for output in _returned(func, body):
            for key in self.by_callee.get(_kernel_callee(output.value), []):
                if key in self.claimed:
                    continue
                pairs: dict[int, int] = {}  # body binding -> the binding before FuseOps it matched
                if self._match(output, self.defs[key], body, repeat, pairs):
                    self.claimed.update(pairs.values())
                    found.update((m, self.tags[m]) for m in pairs.values() if m in self.tags)
                    break
        return found

    def _match(self, inner: Any, outer: Any, body: dict[int, Any], repeat: bool, pairs: dict[int, int]) -> bool:
        """Whether ``outer`` (before FuseOps) computes what ``inner`` (in the body) does, from the
        same values; the pairs matched (``inner`` and what it reads inside the group) join ``pairs``.
        A value read twice in the body (``x`` in ``x * 0.5`` and ``x ** 3``) matches one binding."""
        inner_key, outer_key = _key(inner.var), _key(outer.var)
        if inner_key in pairs:
            return pairs[inner_key] == outer_key
        inner_args, outer_args = _call_args(inner.value), _call_args(outer.value)
        if _kernel_callee(inner.value) != _kernel_callee(outer.value) or len(inner_args) != len(outer_args):
            return False
        if outer_key in self.claimed or outer_key in pairs.values():
            return False
        mark = len(pairs)
        pairs[inner_key] = outer_key
        for a, b in zip(inner_args, outer_args, strict=True):
            if not (isinstance(a, relax.Var) and _key(a) in body):
                continue  # a parameter of the fused function: a value from outside the group
            ok = isinstance(b, relax.Var) and _key(b) in self.defs
            if ok and not repeat and parse_tag(a.name) is not None:
                ok = a.name == b.name  # the first group's tagged members kept their names
            elif ok:
                ok = self._match(body[_key(a)], self.defs[_key(b)], body, repeat, pairs)
            if not ok:
                for added in list(pairs)[mark:]:
                    del pairs[added]
                return False
        return True


def _read_vars(value: Any) -> list[Any]:
    """The variables a non-kernel value (a tuple, an item of one, an alias) reads directly."""
    if isinstance(value, relax.Var):
        return [value]
    if isinstance(value, relax.Tuple):
        return [f for f in value.fields if isinstance(f, relax.Var)]
    if isinstance(value, relax.TupleGetItem) and isinstance(value.tuple_value, relax.Var):
        return [value.tuple_value]
    return []


def _call_args(value: Any) -> list[Any]:
    """A ``call_tir``'s tensor arguments (the tuple after the callee)."""
    if isinstance(value, relax.Call) and len(value.args) > 1 and isinstance(value.args[1], relax.Tuple):
        return list(value.args[1].fields)
    return []


def _returned(func: Any, body: dict[int, Any]) -> list[Any]:
    """The bindings computing a fused function's outputs (the values it returns)."""
    result = func.body.body
    values = list(result.fields) if isinstance(result, relax.Tuple) else [result]
    return [body[_key(v)] for v in values if isinstance(v, relax.Var) and _key(v) in body]
