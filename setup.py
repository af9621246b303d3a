"""The compiled parts of ciwatch: the tracer's stop loop (ciwatch/trace/_stoploop.c, its reads'
judging in _stopjudge.c) and the record's lines in bulk (ciwatch/record/_lines.c). Everything
else is in pyproject.toml; without a compiler the package still works, all in Python."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ciwatch.trace._stoploop",
            sources=["ciwatch/trace/_stoploop.c"],
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
