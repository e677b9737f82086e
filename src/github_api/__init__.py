"""The GitHub seam: the only part that imports PyGithub."""
