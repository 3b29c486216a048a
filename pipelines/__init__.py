"""The adaptation platform's library: every MLproject entry point is a thin wrapper over it."""
