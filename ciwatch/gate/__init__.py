"""What the build may reach: the allowlist made from the policy and the registries learned
at run time, and block mode's live decisions. The proxy, the DNS listener and the tracer ask
it live; the rules ask the same allowlist afterwards, so a replay agrees with the run."""
