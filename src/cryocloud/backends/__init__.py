"""Where a job's agent runs: the registry (registry.py, a leaf), the protocol (base.py), one module per backend."""
