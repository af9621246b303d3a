"""Which package-manager lifecycle hook a process belongs to, decided from what the tracer
sees at the hook's first exec. Used live by the tracer (hooks are followed more closely) and
afterwards by the analysis of a record."""
