"""The Juju face's ops-free parts: what charm.py and charm_state.py hand plain values to.

options (option names and parsers), host (the host seam: LXD setup, RAM disk, logrotate, timer,
policy service), systemd (the systemctl seam), event_timer (the reconcile timer), policy_host
(the policy service unit), manager_port (the runner manager as the charm calls it, and its
config), runner_storage, runner_counts, dependencies (runner binary and image upkeep) and
actions (the work of the flush and update actions).
"""
