"""The compiled parts of ciwatch: the tracer's stop loop (ciwatch/trace/_stoploop.c, its reads'
judging in _stopjudge.c, its writes' events built in _stopdecode.c) and the record's lines in bulk (ciwatch/record/_lines.c). Everything
else is in pyproject.toml; without a compiler the package still works, all in Python."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ciwatch.trace._stoploop",
            sources=[f"ciwatch/trace/{name}.c" for name in ("_stoploop", "_stopread", "_stopjudge", "_stopdecode")],
            depends=["ciwatch/trace/_stoploop.h"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
        Extension(
            "ciwatch.record._lines",
            sources=["ciwatch/record/_lines.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
    ]
)
