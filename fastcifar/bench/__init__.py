"""`fastcifar bench`: images/s of the data pipelines, the training step and both together.

    from fastcifar.bench.config import resolve_bench_config
    from fastcifar.bench.run import run_bench
    report = run_bench(resolve_bench_config(suite="step", quick=True))

Method (what makes the figures comparable): warm-up excluded; medians of several timed
repeats; CUDA events on the GPU, perf_counter + synchronize on the CPU; every figure is
set beside the baseline it beats, measured in the same run (torchvision DataLoader for
loaders, the torch reference for the augmentation op, eager fp32 NCHW for the step, the
step alone for e2e); device ceilings (matmul TFLOP/s, copy bandwidth) measured in the
same run too.

Modules: config (BenchConfig, step configurations, budgets), timing, env, probes, data
(prepared or generated data), training (the engine's pieces), loader and augment_op (the
micro-benchmarks of a loader and of the fused op), pipeline/step/e2e (the suites), run
(run_bench), report (table, JSON, history), plot, merge.
"""
