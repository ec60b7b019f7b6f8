"""`Executor`: compiles a plan once per feed-shape signature and runs its schedule over one
preallocated arena (every intermediate a view at its planned offset, every op writing with
`out=`), so a step at fixed shapes allocates no intermediate buffers."""
from __future__ import annotations

import numbers
import time
from functools import partial

import numpy as np

from . import backend as backends
from .compiler import compile_plan
from .errors import FeedError
from .graph import Node, init_value, verify


class Executor:
    def __init__(self, outputs, backend: str = "numpy", seed: int = 0, profile: bool = False,
                 *, schedule: str = "auto", checkpoint: str | None = None, inplace: bool = True,
                 cse: bool = True, plan_memory: bool = True):
        """schedule: "auto" (memory-aware order if its peak is lower) | "topo" | "memory";
        checkpoint: None | "sqrt" | "cheap" | "budget=BYTES"; the others switch passes off."""
        self.options = {"schedule": schedule, "checkpoint": checkpoint, "inplace": inplace,
                        "cse_pass": cse, "plan_memory": plan_memory}
        self.outputs = list(outputs)
        self.profiling = profile
        self._times: dict[str, float] = {}  # node name -> seconds, summed over runs
        self.order = verify(self.outputs)
        self._source_nodes = [n for n in self.order if n.op in ("placeholder", "parameter")]
        self.backend = backends.get(backend)
        self.param_values: dict[Node, object] = {}  # initialised parameters not fed by the caller
        self._rng = np.random.default_rng(seed)
        self._programs: dict[tuple, _Program] = {}
        self.arena_allocations = 0  # grows only when a new feed-shape signature is compiled
        self._last: _Program | None = None

    def run(self, feed_dict=None, to_numpy: bool = True):
        sources = self._bind_sources(feed_dict or {})
        signature = tuple((n.id, v.shape, v.dtype) for n, v in sources.items())
        program = self._programs.get(signature)
        if program is None:
            program = self._programs[signature] = _Program(self, sources)
            self.arena_allocations += 1
        self._last = program
        results = program.execute(sources, self._times if self.profiling else None)
        if to_numpy:
            return [np.array(self.backend.to_numpy(r)) for r in results]
        return results

    def memory_report(self) -> dict:
        if self._last is None:
            raise RuntimeError("memory_report() needs one run first: shapes come from the feed")
        return dict(self._last.plan.report)

    def profile(self) -> dict:
        """Seconds spent in each node (by name), summed over the runs since construction."""
        return dict(self._times)

    @property
    def plan(self):
        return None if self._last is None else self._last.plan

    def _bind_sources(self, feed_dict) -> dict:
        asarray = self.backend.xp.asarray
        values = {}
        for node in self._source_nodes:
            value = feed_dict.get(node)
            if value is not None:
                values[node] = asarray(value)
            elif node.op == "placeholder":
                raise FeedError(f"placeholder {node.name!r} was not fed a value")
            else:
                values[node] = self._parameter(node)
        return values

    def _parameter(self, node):
        if node not in self.param_values:
            self.param_values[node] = self.backend.asarray(init_value(node, self._rng))
        return self.param_values[node]


class _Program:
    """One compiled plan bound to one arena, with a flat step table for a tight run loop."""

    def __init__(self, executor: Executor, sources: dict):
        self.plan = plan = compile_plan(executor.order, executor.outputs, sources, **executor.options)
        be = executor.backend
        self.xp = be.xp
        self.arena = be.empty_bytes(plan.arena_bytes)
        self.values = {n: self._view(b, plan.shapes[n], plan.dtypes[n]) for n, b in plan.buffers.items()}
        self.scratch = {n: {name: self._view(*spec) for name, spec in ws.items()}
                        for n, ws in plan.workspaces.items()}
        for node in executor.order:
            if node.op == "constant":
                self.values[node] = _constant_value(be, node.attrs["value"])
        self.alias = plan.alias
        self.outputs = executor.outputs
        self.sync = be.synchronize
        self._bind_steps(be, sources)

    def _bind_steps(self, be, sources):
        """Each step's argument list is built once: arena views and constants never move;
        only the slots that read sources (feeds, parameters) are refreshed per run."""
        self.steps = []
        self.slots_of: dict = {}  # source node -> [(args list, position, step index)]
        for index, node in enumerate(self.plan.schedule):
            args = []
            for k, inp in enumerate(node.inputs):
                src = self.alias.get(inp, inp)
                if src in sources:
                    self.slots_of.setdefault(src, []).append((args, k, index))
                    args.append(None)
                else:
                    args.append(self.values[src])
            compute = be.compute_for(node.opdef)
            if node in self.scratch and compute is node.opdef.compute:  # planned workspace
                compute = partial(_with_workspace, compute, self.scratch[node])
            self.steps.append((compute, args, node.attrs, self.values[node]))
        self.binders = [self._binder(be, node) for node in self.plan.schedule]
        self.bound: dict = {}  # source node -> the array its steps are bound to
        self.calls = [None] * len(self.steps)
        self._rebind(sources)  # binds the steps that read sources
        self.calls = [call or self._bind(i) for i, call in enumerate(self.calls)]

    @staticmethod
    def _binder(be, node):
        """The op's fast `bind` rule unless the backend overrides the op with its own kernel
        or the op has a planned workspace (a bind rule has no way to receive it)."""
        return None if node.op in be.kernels or node.opdef.workspace else node.opdef.bind

    def _bind(self, index):
        compute, args, attrs, out = self.steps[index]
        binder = self.binders[index]
        if binder is not None:
            return binder(self.xp, args, attrs, out)
        return partial(compute, self.xp, args, attrs, out)

    def _view(self, buf, shape, dtype):
        """A typed view of the buffer's planned byte range of the arena."""
        raw = self.arena[buf.offset:buf.offset + buf.nbytes]
        return raw.view(dtype).reshape(shape)

    def execute(self, sources, times=None):
        values, alias = self.values, self.alias
        values.update(sources)
        self._rebind(sources)
        if times is not None:
            self._execute_timed(times)
        else:
            for call in self.calls:
                call()
        return [values[alias.get(o, o)] for o in self.outputs]

    def _rebind(self, sources):
        """Re-bind only the steps reading a source that is a different array than last run:
        parameters updated in place keep their binding, a new batch rebinds its few readers."""
        bound, stale = self.bound, set()
        for src, value in sources.items():
            if bound.get(src) is not value:
                bound[src] = value
                for args, k, index in self.slots_of.get(src, ()):
                    args[k] = value
                    stale.add(index)
        for index in stale:
            self.calls[index] = self._bind(index)

    def _execute_timed(self, times):
        """The same loop with a clock around each op (kept apart so the hot loop stays bare)."""
        for node, (compute, args, attrs, out) in zip(self.plan.schedule, self.steps):
            start = time.perf_counter()
            compute(self.xp, args, attrs, out)
            self.sync()
            times[node.name] = times.get(node.name, 0.0) + time.perf_counter() - start


def _with_workspace(compute, ws, xp, args, attrs, out):
    compute(xp, args, attrs, out, ws)


def _constant_value(backend, value):
    if isinstance(value, numbers.Number):
        return value  # weak python scalar: takes the dtype of whatever it meets
    return backend.asarray(value)
