"""The unit's configuration as plain models: the state the charm builds, the manager's settings."""
