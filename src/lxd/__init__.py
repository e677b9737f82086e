"""The LXD seam: the only part that imports pylxd."""
