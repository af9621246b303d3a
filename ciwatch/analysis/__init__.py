"""Analysis of a record: the process tree and the hooks it ran."""
