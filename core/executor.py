"""`Executor`: compiles a plan once per feed-shape signature and runs its schedule over one
preallocated arena (every intermediate a view at its planned offset, every op writing with
`out=`), so a step at fixed shapes allocates no intermediate buffers."""
from __future__ import annotations

import numbers
import time
from functools import partial

import numpy as np

from . import backend as backends
from . import distributed
from .compiler import compile_plan, fusion, hazards
from .errors import FeedError
from .graph import Node, init_value, verify
from .ops import cpu


class Executor:
    def __init__(self, outputs, backend: str | None = None, seed: int = 0, profile: bool = False,
                 *, schedule: str = "auto", checkpoint: str | None = None, inplace: bool = True,
                 cse: bool = True, plan_memory: bool = True, fuse: bool = True,
                 capture: bool = True, streams: bool = False):
        """backend: a registered name or "auto" (None: `core.backend.default_name()`, numpy
        unless set); schedule: "auto" (memory-aware order if its peak is lower) | "topo" | "memory";
        checkpoint: None | "sqrt" | "cheap" | "budget=BYTES" | a frozenset of forward nodes to
        keep (recomputing the rest); the others switch passes off.
        fuse / capture / streams use the backend's generated kernels, step capture (CUDA
        graphs) and multi-stream runner where it has them (the numpy backend has none)."""
        self.options = {"schedule": schedule, "checkpoint": checkpoint, "inplace": inplace,
                        "cse_pass": cse, "plan_memory": plan_memory}
        self.device_options = {"fuse": fuse, "capture": capture and not profile, "streams": streams}
        self.outputs = list(outputs)
        self.profiling = profile
        self._times: dict[str, float] = {}  # node name -> seconds, summed over runs
        self.order = verify(self.outputs)
        # fed or initialised values (constants are baked into the program)
        self._source_nodes = [n for n in self.order if n.opdef.fed]
        self.backend = backends.get(backend or backends.default_name())
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

    @property
    def cpu_threads(self):
        """How the last compiled step runs on the CPU (numpy backend): a cpu.Threads, its
        large ops' threads, measured per step unless LOOM_CPU_THREADS sets them (see
        core/ops/cpu.py)."""
        program = self._last
        if program is None:
            return cpu.Threads(1)
        choice = program.thread_choice
        ops = choice.chosen.ops if choice and choice.chosen else program.row_threads
        return cpu.Threads(ops, program.gemm_threads)

    @property
    def choosing_threads(self) -> bool:
        """True while the last compiled step is still timing its thread options (its next
        runs may be slower than settled ones: benchmarks run it until this is False)."""
        program = self._last
        choice = program and program.thread_choice
        return bool(choice) and choice.chosen is None

    @property
    def launches_per_step(self) -> int:
        """Calls the last compiled step makes (each one kernel launch on a GPU, after fusion)."""
        return 0 if self._last is None else len(self._last.live_calls)

    def _bind_sources(self, feed_dict) -> dict:
        asarray = self.backend.asarray
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
    """One compiled plan bound to one arena, with a flat step table for a tight run loop.

    On a device backend it also swaps each fusion group for the backend's generated kernel,
    can run the steps on several streams, and captures the whole step once (a CUDA graph)
    to replay it, with each batch copied into fixed staging buffers so the capture stays valid."""

    def __init__(self, executor: Executor, sources: dict):
        be = self.backend = executor.backend
        options = executor.device_options
        fusing = options["fuse"] and be.fuse is not None
        self.plan = plan = compile_plan(executor.order, executor.outputs, sources,
                                        **backend_plan_options(be, fusing), **executor.options)
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
        self.fused, self.skipped = _fused_kernels(be, plan) if fusing else ({}, set())
        # a data-parallel step: MPI is polled between its ops (a property of the plan)
        self.communicates = any(n.opdef.effects for n in plan.schedule)
        self.streamed = options["streams"] and be.stream_runner is not None
        # a communicating step is not captured: its collectives run on a stream of their own
        # and host-side MPI calls (the blocking loss sum) cannot be replayed from a graph
        self.capturing = options["capture"] and be.capture is not None and not self.communicates
        self.staging: dict = {}  # fed placeholder -> its fixed device buffer (capture only)
        self.replay = None
        self.warm = False
        self._deps = None  # step dependencies for the stream runner
        # large row-wise ops split over CPU threads (numpy only: a device has its own), where
        # that is measured to pay (unless the user set the count)
        self.row_threads = _host_threads(be)
        self.thread_choice = (cpu.ThreadChoice(cpu.thread_options(self.row_threads))
                              if self.row_threads > 1 and not cpu.chosen_by_user() else None)
        # large GEMMs split over the CPU threads by a rule of the plan (ops/cpu.py split_gemm),
        # BLAS on one thread inside the step
        self.gemm_threads = _gemm_threads(be)
        self.blas = cpu.step_blas_threads() if be.host_blas else None
        self.warm_cpu = False
        self._bind_steps(be, sources)

    def _bind_steps(self, be, sources):
        """Each step's argument list is built once: arena views and constants never move;
        only the slots that read sources (feeds, parameters) are refreshed per run."""
        self.steps = []
        self.slots_of: dict = {}  # source node -> [(args list, position, step index)]
        for index, node in enumerate(self.plan.schedule):
            if node in self.skipped:  # computed inside its group's fused kernel
                self.steps.append(None)
                continue
            kernel = self.fused.get(node)
            reads = kernel.inputs if kernel is not None else node.inputs
            args = []
            for k, inp in enumerate(reads):
                src = self.alias.get(inp, inp)
                if src in sources:
                    self.slots_of.setdefault(src, []).append((args, k, index))
                    args.append(None)
                else:
                    args.append(self.values[src])
            self.steps.append((self._compute(be, node, kernel), args, node.attrs, self.values[node]))
        self.binders = [None if step is None else self._binder(be, node)
                        for node, step in zip(self.plan.schedule, self.steps)]
        self.bound: dict = {}  # source node -> the array its steps are bound to
        self.calls = [None] * len(self.steps)
        self.live_calls = self.calls
        self._rebind(sources)  # binds the steps that read sources
        self.calls = [call or (step and self._bind(i)) for i, (call, step) in
                      enumerate(zip(self.calls, self.steps))]
        self._steps_changed()

    def _compute(self, be, node, kernel):
        if kernel is not None:
            return partial(_run_fused, kernel)
        compute = be.compute_for(node.opdef)
        if node in self.scratch:  # planned workspace, passed to the op's compute or override
            compute = partial(_with_workspace, compute, self.scratch[node])
        return compute

    def _binder(self, be, node):
        """The op's fast `bind` rule unless the backend overrides the op with its own kernel
        (or a fused one), or the op has a planned workspace (a bind rule cannot receive it)."""
        if node.op in be.kernels or node.opdef.workspace or node in self.fused:
            return None
        return node.opdef.bind

    def _bind(self, index):
        compute, args, attrs, out = self.steps[index]
        in_parts = self._gemm_parts(index)
        if in_parts is not None:
            return in_parts
        parts = self._row_parts(index)
        if parts is None:
            return self._call(index, compute, args, out)
        # one call per CPU thread, each on its run of rows (and of the workspace)
        raw = self.backend.compute_for(self.plan.schedule[index].opdef)
        return partial(cpu.together, [
            self._call(index, raw if ws is None else partial(_with_workspace, raw, ws), a, o)
            for a, o, ws in parts])

    def _call(self, index, compute, args, out):
        """The op's fast bind rule where it has one, else its compute as a partial."""
        attrs, binder = self.steps[index][2], self.binders[index]
        if binder is not None:
            return binder(self.xp, args, attrs, out)
        return partial(compute, self.xp, args, attrs, out)

    def _gemm_parts(self, index):
        """A GEMM op's call in parts (OpDef.parts) where it splits over the CPU threads."""
        node = self.plan.schedule[index]
        if self.gemm_threads < 2 or node.opdef.parts is None or node in self.fused:
            return None
        _, args, attrs, out = self.steps[index]
        return node.opdef.parts(self.xp, args, attrs, out, self.gemm_threads)

    def _row_parts(self, index):
        if self.row_threads < 2:
            return None
        node = self.plan.schedule[index]
        if node in self.fused:
            return None
        _, args, attrs, out = self.steps[index]
        return cpu.row_parts(node.opdef, attrs, args, out, self.scratch.get(node), self.row_threads)

    def _view(self, buf, shape, dtype):
        """A typed view of the buffer's planned byte range of the arena."""
        raw = self.arena[buf.offset:buf.offset + buf.nbytes]
        return raw.view(dtype).reshape(shape)

    def execute(self, sources, times=None):
        if self.capturing:
            sources = self._stage(sources)
        values, alias = self.values, self.alias
        values.update(sources)
        self._rebind(sources)
        if self.blas:
            cpu.hold_one_blas_thread()
        try:
            if times is not None:
                self._execute_timed(times)
            elif self.capturing:
                self._execute_captured()
            elif self.thread_choice is not None:
                self._execute_choosing_threads()
            else:
                self.run_step()
        finally:
            if self.blas:
                cpu.release_one_blas_thread()
        return [values[alias.get(o, o)] for o in self.outputs]

    def _execute_choosing_threads(self):
        """A numpy step on the threads its ThreadChoice proposes (its first run, which
        touches every buffer for the first time, is not timed)."""
        choice = self.thread_choice
        option = choice.next() if self.warm_cpu else cpu.Threads(self.row_threads)
        if option.ops != self.row_threads:
            self._use_threads(option.ops)
        old_limit = cpu.limit_threads(option.ops)
        try:
            start = time.perf_counter()
            self.run_step()
            elapsed = time.perf_counter() - start
        finally:
            cpu.limit_threads(old_limit)
        if self.warm_cpu:
            choice.record(option, elapsed)
        self.warm_cpu = True

    def _use_threads(self, threads):
        """Bind every step anew for `threads` CPU threads (row splits are made at binding)."""
        self.row_threads = threads
        self.calls = [step and self._bind(i) for i, step in enumerate(self.steps)]
        self._steps_changed()

    def _run_in_order(self):
        for call in self.live_calls:
            call()

    def _run_polling(self):
        """The same, letting started communication progress between ops (data-parallel)."""
        progress = distributed.progress
        for call in self.live_calls:
            call()
            progress()

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
        if stale and self.live_calls is not self.calls:
            self._steps_changed()

    def _steps_changed(self):
        """New call objects: rebuild what holds them (the live list, the stream runner) and
        drop a captured step, which replays the old ones."""
        self.live_calls = [c for c in self.calls if c is not None] if self.skipped or self.streamed \
            else self.calls
        self.run_step = self._run_polling if self.communicates else self._run_in_order
        if self.streamed:
            live = [i for i, step in enumerate(self.steps) if step is not None]
            if self._deps is None:  # a property of the plan: computed once
                self._deps = hazards.step_dependencies(self.plan, live, self.fused)
            deps = self._deps
            streams = [self.plan.streams.get(self.plan.schedule[i], 0) for i in live]
            self.run_step = self.backend.stream_runner(self.live_calls, streams, deps)
        self.replay = None

    def _stage(self, sources):
        """Copy each fed batch into a fixed buffer: a captured step reads the same addresses
        every replay. Parameters and optimizer state are updated in place and never move."""
        staged = dict(sources)
        for node, value in sources.items():
            if node.op == "placeholder" and not node.attrs.get("state"):
                buffer = self.staging.get(node)
                if buffer is None:
                    buffer = self.staging[node] = self.xp.empty_like(value)
                self.xp.copyto(buffer, value)
                staged[node] = buffer
        return staged

    def _execute_captured(self):
        """The first run compiles every kernel eagerly; the second captures the step (capture
        records without running) and every later run replays it."""
        if not self.warm:
            self.warm = True
            return self.run_step()
        if self.replay is None:
            try:
                self.replay = self.backend.capture(self.run_step)
            except NotImplementedError:
                self.capturing = False
                return self.run_step()
        self.replay()

    def _execute_timed(self, times):
        """The same loop with a clock around each op (kept apart so the hot loop stays bare)."""
        for node, step, call in zip(self.plan.schedule, self.steps, self.calls):
            if step is None:
                continue
            start = time.perf_counter()
            call()
            self.sync()
            times[node.name] = times.get(node.name, 0.0) + time.perf_counter() - start


def backend_plan_options(be, fusing: bool = True) -> dict:
    """What a backend changes in a plan: whether fusion groups run as one kernel that the
    plan must keep inputs alive for (a device's), and on a host BLAS backend (numpy, the
    stand-in device), the CPU threads an op's parts may run on (a large convolution's chunks,
    a workspace slot each) and transpositions folded into numpy's matmul."""
    fused = fusing and be.fuse is not None and be.fused_inputs_planned
    return {"fused_kernels": fused, "host_threads": _gemm_threads(be), "fold_transposes": be.host_blas}


def _host_threads(be) -> int:
    """CPU threads a step's row-wise ops may split over: numpy's; a device has its own."""
    return cpu.thread_count() if be.name == "numpy" else 1


def _gemm_threads(be) -> int:
    """CPU threads a step's GEMMs split over (convolutions' chunks, matmuls' rows), a rule
    of the plan: numpy's, and the stand-in device's (so that its bits stay numpy's)."""
    return cpu.thread_count() if be.host_blas else 1


def _fused_kernels(be, plan):
    """{last member: kernel} for each fusion group the backend generates one kernel for, and
    the other members (skipped: only the last member of a group is read outside it). A
    matmul/conv head keeps its own step; its elementwise epilogue is fused."""
    fused, skipped = {}, set()
    for group in plan.groups:
        tail = fusion.kernel_tail(group)
        if not tail or hazards.overwritten_while_fused(tail, plan):
            continue
        kernel = be.fuse(tail, plan)
        if kernel is not None:
            fused[tail[-1]] = kernel
            skipped.update(tail[:-1])
    return fused, skipped


def _run_fused(kernel, xp, args, attrs, out):
    kernel(args, out)


def _with_workspace(compute, ws, xp, args, attrs, out):
    compute(xp, args, attrs, out, ws)


def _constant_value(backend, value):
    if isinstance(value, numbers.Number):
        return value  # weak python scalar: takes the dtype of whatever it meets
    return backend.asarray(value)
