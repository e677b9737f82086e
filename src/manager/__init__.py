"""The runner manager's own machinery: observing, removing, the unit lock, the parallel executor."""
