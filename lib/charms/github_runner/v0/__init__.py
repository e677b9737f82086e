"""Version 0 of the github-runner charm libraries."""
