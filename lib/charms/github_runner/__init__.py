"""Libraries written for the github-runner charm."""
