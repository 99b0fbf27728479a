"""The command-line face: parses, calls the functions underneath, renders. No logic of its own."""
