"""Reporters: turning a record (and later a verdict) into something people read."""
