"""Evasion classes: hooks written to get past the tracer, the proxy and the rules.

Each technique is shown to work bare, then recorded, judged and refused under ciwatch.
"""
