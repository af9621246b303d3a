"""The job a run belongs to, and the secrets of that job that must stay out of the record."""

from ciwatch.job.context import JobContext, Provider, detect_job
from ciwatch.job.scrub import REDACTED, Scrubber

__all__ = ["REDACTED", "JobContext", "Provider", "Scrubber", "detect_job"]
