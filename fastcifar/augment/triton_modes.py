"""Triton kernels and their helper functions, compiled for the GPU or interpreted on CPU.

CPU tensors run through Triton's interpreter whatever TRITON_INTERPRET says. triton.jit
reads that setting when it decorates a function, and a kernel can only call helpers
decorated in its own mode, so a module-level @triton.jit kernel would depend on whether
the variable was set before import. Kernels and helpers are therefore plain functions,
wrapped per mode on first use: each mode gets its own copies of them, which call each
other by name within that mode. For the same reason kernel bodies use only core builtins
(tl.load, tl.where, tl.reduce, tl.gather...): tl.sum, tl.max and the rest of
triton.language.standard are @triton.jit functions fixed to the mode active when
`import triton` ran, and fail in the interpreter when the variable was set after it.
"""
from __future__ import annotations

import types
from typing import Callable

import triton


def jit_functions(functions: list[Callable], interpret: bool) -> dict[str, object]:
    """{name: function wrapped by triton.jit in this mode}; every copy sees the other
    wrapped functions (and its own module's globals) under their names."""
    copies = []
    for fn in functions:
        namespace = dict(fn.__globals__)
        copy = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__,
                                  fn.__closure__)
        copy.__qualname__, copy.__module__ = fn.__qualname__, fn.__module__
        copies.append((copy, namespace))
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = interpret
        wrapped = {copy.__name__: triton.jit(copy) for copy, _ in copies}
    for _, namespace in copies:
        namespace.update(wrapped)
    return wrapped
