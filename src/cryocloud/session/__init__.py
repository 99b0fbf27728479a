"""On-the-fly processing's own logic below the app: a session's settings, movie detection, batching, the
simulator, the ledger's session tables and RELION's pipeliner driven for a session."""
