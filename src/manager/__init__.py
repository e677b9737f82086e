"""The runner manager's own machinery: observing, removing, the unit lock, parallel work."""
