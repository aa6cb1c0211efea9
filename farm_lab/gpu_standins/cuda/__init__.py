"""Stand-in for cuda-python's ``cuda`` package (see ../README.md)."""
