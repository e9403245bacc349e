"""Schedules for untuned TVM builds on CPUs, registered by name.

TVM 0.27's default Relax pipeline for ``llvm`` leaves every kernel as plain nested loops: one thread,
no vector code, so ``TVM_NUM_THREADS`` has no effect. ``parallel`` applies one cheap rule to every
kernel instead of a search: fuse the leading data-parallel loops and run them on the thread pool;
for reductions (convolutions, matmuls) move the last data-parallel loop (the output width) below the
reduction loops so LLVM vectorises along it; vectorise the innermost loop of element-wise kernels.
Numbers are still checked against ONNX Runtime by ``modnas.exporters.tvm.verify_tvm``.
"""
from __future__ import annotations

from typing import Any

SCHEDULES: dict[str, str] = {
    "none": "TVM's default pipeline: naive loops, single-threaded",
    "parallel": "outer loops on the thread pool, output width innermost for vector code",
}
DEFAULT_SCHEDULE = "parallel"


def relax_pipeline(schedule: str, target: Any) -> Any:
    """The ``relax_pipeline`` argument for ``tvm.compile``: "default" for ``none``, else a pass."""
    if schedule == "none":
        return "default"
    if schedule != "parallel":
        raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(sorted(SCHEDULES))}")
    import tvm
    from tvm.relax.backend import cpu_generic
    from tvm.s_tir import dlight

    rule = dlight.ScheduleRule.from_callable("modnas_parallel")(_parallel_rule)

    @tvm.transform.module_pass(opt_level=0)
    def _pipeline(mod: Any, _ctx: Any) -> Any:
        with target:
            passes = (cpu_generic.library_dispatch_passes(target) + cpu_generic.legalize_passes(target)
                      + [dlight.ApplyDefaultSchedule(rule)]
                      + cpu_generic.pipeline.dataflow_lower_passes(target) + cpu_generic.finalize_passes(target))
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline


def _parallel_rule(func: Any, target: Any, tunable: bool) -> Any:
    """Schedule one PrimFunc (see the module docstring); None leaves it as it is."""
    from tvm import s_tir, tirx
    from tvm.s_tir.dlight.analysis import normalize_prim_func

    if not isinstance(func, tirx.PrimFunc):
        return None
    sch = s_tir.Schedule(func, error_render_level="none")
    try:
        infos = normalize_prim_func(sch)
        if not infos:
            return None
        for info in infos:
            _schedule_block(sch, info.dom_kind(), info.get_loops())
    except Exception:  # a kernel this rule cannot handle keeps TVM's default loops
        return None
    return sch


def _schedule_block(sch: Any, kinds: str, loops: list[Any]) -> None:
    lead = len(kinds) - len(kinds.lstrip("S"))
    if lead == 0 or len(loops) != len(kinds):
        return
    reductions = [loops[i] for i, kind in enumerate(kinds) if kind != "S"]
    inner = loops[lead - 1] if lead >= 2 else None
    outer = loops[: lead - 1] if inner is not None else loops[:lead]
    if reductions and inner is not None:
        sch.reorder(*outer, *reductions, inner)
    fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
    sch.parallel(fused)
    if inner is not None and not reductions:
        sch.vectorize(inner)


def parallel_rule() -> Any:
    """The ``parallel`` schedule as a DLight rule (the fallback of tuned builds for kernels not tuned)."""
    from tvm.s_tir import dlight

    return dlight.ScheduleRule.from_callable("modnas_parallel")(_parallel_rule)
