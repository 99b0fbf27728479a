"""`cryocloud serve`: the REST API under /api/v1/ and the dashboard under /, one process that also runs the
monitor's loop (the ledger's one writer, facility mode). A face: it parses, calls app/, renders."""
