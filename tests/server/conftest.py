from relion_support import demo_base, demo_project  # noqa: F401  (fixtures)
