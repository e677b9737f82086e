"""The runner manager's own machinery: settings, the unit lock, the parallel executor."""
