"""The per-user loop that owns what outlives a command: dispatch, reconcile, budget, requeue, staging, and the
submission socket (it is handed a handler; it imports no face). See docs/architecture.md."""
