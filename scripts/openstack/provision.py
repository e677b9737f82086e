"""TEST INFRASTRUCTURE: provision the test OpenStack of scripts/setup-openstack.sh.

Run by that script with openstacksdk (this checkout's venv), idempotently:

    provision.py identity   service project, service users, catalog entries
    provision.py resources  charm project and user, flavor, image, network, clouds files
    provision.py probe      boot one server (retried until one is ACTIVE), then delete it

Passwords come from the environment (ADMIN_PW, SERVICE_PW, RUNNER_PW); output files go to
$STATE. Every call is bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import openstack
import yaml

AUTH_URL = "http://127.0.0.1:5000/v3"
REGION = "RegionOne"
DOMAIN = "default"
CATALOG = {
    "glance": ("image", "http://127.0.0.1:9292"),
    "placement": ("placement", "http://127.0.0.1:8778"),
    "nova": ("compute", "http://127.0.0.1:8774/v2.1"),
    "neutron": ("network", "http://127.0.0.1:9696"),
}
PROJECT = "runner"
USER = "runner"
FLAVOR = "runner-small"
IMAGE = "runner-tiny"
NETWORK = "runner-net"
SUBNET = "runner-subnet"
CIDR = "198.18.100.0/24"
PHYSNET = "physnet1"
TIMEOUT = 60


def _auth(user: str, password: str, project: str) -> dict[str, str]:
    return {
        "auth_url": AUTH_URL,
        "username": user,
        "password": password,
        "project_name": project,
        "user_domain_name": "Default",
        "project_domain_name": "Default",
    }


def _cloud(user: str, password: str, project: str) -> dict[str, Any]:
    return {
        "auth": _auth(user, password, project),
        "region_name": REGION,
        "interface": "public",
        "identity_api_version": 3,
        "api_timeout": TIMEOUT,
    }


def _admin() -> Any:
    return openstack.connect(**_cloud("admin", os.environ["ADMIN_PW"], "admin"))


def _project(conn: Any, name: str) -> Any:
    found = conn.identity.find_project(name, domain_id=DOMAIN)
    return found or conn.identity.create_project(name=name, domain_id=DOMAIN)


def _user(conn: Any, name: str, password: str, project: Any, role: str) -> Any:
    user = conn.identity.find_user(name, domain_id=DOMAIN)
    if user is None:
        user = conn.identity.create_user(
            name=name, password=password, domain_id=DOMAIN, default_project_id=project.id
        )
    else:
        conn.identity.update_user(user, password=password)
    conn.identity.assign_project_role_to_user(project, user, conn.identity.find_role(role))
    return user


def identity() -> None:
    """Service project, service users (role admin) and catalog entries."""
    conn = _admin()
    service_project = _project(conn, "service")
    for name, (kind, url) in CATALOG.items():
        _user(conn, name, os.environ["SERVICE_PW"], service_project, "admin")
        service = conn.identity.find_service(name) or conn.identity.create_service(
            name=name, type=kind, enabled=True
        )
        have = {e.interface for e in conn.identity.endpoints(service_id=service.id)}
        for interface in ("public", "internal", "admin"):
            if interface not in have:
                conn.identity.create_endpoint(
                    service_id=service.id, interface=interface, url=url, region_id=REGION
                )


def _wait_hypervisor(conn: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not list(conn.compute.hypervisors()):
        if time.monotonic() > deadline:
            sys.exit("provision: no nova-compute registered within 60 s")
        time.sleep(0.5)


def resources(state: Path) -> None:
    """Charm project and user, flavor, image, network; clouds files and resources.json."""
    conn = _admin()
    project = _project(conn, PROJECT)
    _user(conn, USER, os.environ["RUNNER_PW"], project, "member")
    if conn.compute.find_flavor(FLAVOR) is None:
        conn.compute.create_flavor(name=FLAVOR, ram=512, vcpus=1, disk=1, is_public=True)
    if conn.image.find_image(IMAGE) is None:
        tiny = state / "runner-tiny.raw"
        tiny.write_bytes(b"\0" * 65536)
        conn.create_image(
            IMAGE,
            filename=str(tiny),
            disk_format="raw",
            container_format="bare",
            visibility="public",
            wait=True,
            timeout=TIMEOUT,
        )
    network = conn.network.find_network(NETWORK, project_id=project.id)
    if network is None:
        network = conn.network.create_network(
            name=NETWORK,
            project_id=project.id,
            provider_network_type="flat",
            provider_physical_network=PHYSNET,
        )
    if conn.network.find_subnet(SUBNET, network_id=network.id) is None:
        conn.network.create_subnet(
            name=SUBNET,
            network_id=network.id,
            project_id=project.id,
            ip_version=4,
            cidr=CIDR,
            gateway_ip="198.18.100.1",
            enable_dhcp=False,
        )
    _wait_hypervisor(conn)
    clouds = {"clouds": {"testcloud": _cloud(USER, os.environ["RUNNER_PW"], PROJECT)}}
    admin = {"clouds": {"testcloud-admin": _cloud("admin", os.environ["ADMIN_PW"], "admin")}}
    for name, content in (("clouds.yaml", clouds), ("admin-clouds.yaml", admin)):
        path = state / name
        path.write_text(yaml.safe_dump(content, sort_keys=False))
        path.chmod(0o600)
    names = {
        "cloud": "testcloud",
        "admin_cloud": "testcloud-admin",
        "clouds_yaml": str(state / "clouds.yaml"),
        "admin_clouds_yaml": str(state / "admin-clouds.yaml"),
        "project": PROJECT,
        "project_id": project.id,
        "user": USER,
        "flavor": FLAVOR,
        "image": IMAGE,
        "network": NETWORK,
        "subnet_cidr": CIDR,
    }
    (state / "resources.json").write_text(json.dumps(names, indent=2) + "\n")


def probe(state: Path) -> None:
    """Boot one server as the charm's user until one reaches ACTIVE, then delete it.

    A listed hypervisor is not yet a bootable cloud: in the first seconds after nova-compute
    starts, the scheduler or placement may not know the host, and servers go to ERROR. The
    bring-up ends only when a server boots; each failed try prints nova's fault.
    """
    names = json.loads((state / "resources.json").read_text())
    conn = openstack.connect(**_cloud(USER, os.environ["RUNNER_PW"], PROJECT))
    flavor = conn.compute.find_flavor(names["flavor"], ignore_missing=False)
    image = conn.image.find_image(names["image"], ignore_missing=False)
    network = conn.network.find_network(names["network"], ignore_missing=False)
    deadline = time.monotonic() + 3 * TIMEOUT
    fault = "none"
    for attempt in range(1, 1000):
        server = conn.compute.create_server(
            name=f"setup-probe-{attempt}",
            flavor_id=flavor.id,
            image_id=image.id,
            networks=[{"uuid": network.id}],
        )
        try:
            server = conn.compute.wait_for_server(
                server, status="ACTIVE", failures=["ERROR"], interval=0.5, wait=TIMEOUT
            )
            booted = True
        except openstack.exceptions.ResourceFailure:
            fault = str((conn.compute.get_server(server.id).fault or {}).get("message"))
            print(f"provision: probe server {attempt} went to ERROR: {fault}", flush=True)
            booted = False
        conn.compute.delete_server(server, ignore_missing=True)
        conn.compute.wait_for_delete(server, interval=0.5, wait=TIMEOUT)
        if booted:
            print(f"provision: probe server {attempt} booted", flush=True)
            return
        if time.monotonic() > deadline:
            sys.exit(f"provision: no server booted within {3 * TIMEOUT} s (last fault: {fault})")
        time.sleep(2)


def main() -> None:
    """Run the step named on the command line."""
    step = sys.argv[1] if len(sys.argv) > 1 else ""
    if step == "identity":
        identity()
    elif step == "resources":
        resources(Path(os.environ["STATE"]))
    elif step == "probe":
        probe(Path(os.environ["STATE"]))
    else:
        sys.exit("usage: provision.py identity|resources|probe")


if __name__ == "__main__":
    main()
