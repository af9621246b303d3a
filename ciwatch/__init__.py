"""ciwatch: trace a CI build step and record what it ran, wrote and talked to."""

__version__ = "0.1.0"
