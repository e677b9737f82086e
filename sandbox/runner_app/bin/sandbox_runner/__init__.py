"""The sandbox runner application: a Python stand-in for the GitHub Actions runner.

Standard library only; runs on Python 3.9 and later.
"""
