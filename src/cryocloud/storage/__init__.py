"""Object storage and data movement: see docs/storage.md. Import submodules directly (they load SDKs lazily)."""
