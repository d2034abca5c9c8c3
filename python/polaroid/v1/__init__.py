"""Generated polaroid.v1 messages and stubs (see generate_stubs.py)."""
