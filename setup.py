"""The compiled part of ciwatch: the tracer's stop loop (ciwatch/trace/_stoploop.c). Everything
else is in pyproject.toml; without a compiler the package still works, on the Python loop."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ciwatch.trace._stoploop",
            sources=["ciwatch/trace/_stoploop.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
