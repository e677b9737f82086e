"""What runners are made from: the runner binary and the runner image."""
