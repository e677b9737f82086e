"""The OpenStack backend: runners as Nova servers (issue 21).

Not named ``openstack``: that is openstacksdk's package, which ``src/`` on the path would shadow.
Its modules, each one thing:

- :mod:`openstack_backend.seam`: the Protocol the core is typed with (:class:`OpenstackCloud`)
  and :class:`ServerView`; no SDK.
- :mod:`openstack_backend.client`: :class:`OpenstackClient`, the only module importing
  openstacksdk (``openstack``) and keystoneauth1: timeouts, microversion, errors mapped.
- :mod:`openstack_backend.user_data`: the cloud-init user data of a runner (JIT config).
- :mod:`openstack_backend.observe`: servers and GitHub records as the reconcile plan's views.
- :mod:`openstack_backend.manager`: :class:`OpenstackRunnerManager`, a ``RunnerManagerPort``.
"""
