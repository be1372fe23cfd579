"""Speed benchmarks of medsft (not part of the installed package); docs/benchmarks.md describes each.

The training and generation benchmarks run from the repository root as modules: `python -m benchmarks.bench`
(`make bench`) and, on a GPU, `python -m benchmarks.gpu_check`.
"""
