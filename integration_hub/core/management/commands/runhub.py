"""Run the whole hub on one machine: sandbox systems, demo data, web console, Celery worker and beat.

Every part is a child process; if one dies the others are stopped and the command exits non-zero.
Ctrl-C stops everything. Used by ``./hub up`` (which sets HUB_DEBUG=true: a loopback demo, so the web
console must listen on a loopback address while debug is on); in production run the parts under a
process manager with debug off.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from integration_hub.core import queues
from integration_hub.core.deploy_guard import LOOPBACK_HOSTS


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _port(addr: str, default: int) -> int:
    tail = addr.rsplit(":", 1)[-1] if ":" in addr else (addr if addr.isdigit() else "")
    return int(tail) if tail.isdigit() else default


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on (host, port): binding it fails (SO_REUSEADDR, as the servers
    use, so a port in TIME_WAIT from a run that just ended is not "in use")."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError:
            return True
    return False


class Command(BaseCommand):
    help = "Run sandbox + web + worker + beat together (demo / laptop mode)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--addr",
            default=os.environ.get("HUB_ADDR", "127.0.0.1:8000"),
            help="HOST:PORT (or PORT) the web console listens on; default HUB_ADDR or 127.0.0.1:8000",
        )
        parser.add_argument("--no-sandbox", action="store_true", help="talk to real systems; do not start the sandbox")
        parser.add_argument("--no-seed", action="store_true", help="do not seed demo data")
        parser.add_argument("--storefront", default="commercetools", choices=["commercetools", "sfcc"])
        parser.add_argument("--master", default="clarus", choices=["wair", "clarus", "archean"])
        parser.add_argument("--concurrency", type=int, default=2)

    def handle(self, *args, **opts):
        host = (
            opts["addr"].rsplit(":", 1)[0]
            if ":" in opts["addr"]
            else ("127.0.0.1" if opts["addr"].isdigit() else opts["addr"])
        )
        if settings.DEBUG and host.lower() not in LOOPBACK_HOSTS:
            raise CommandError(
                f"debug is on: the demo listens on loopback only, not {opts['addr']} "
                "(use --addr 127.0.0.1:PORT, or HUB_DEBUG=false with real keys)"
            )
        # refuse at once when a port is taken (a second ./hub up): otherwise the health checks would be answered
        # by the running hub, which this one would re-seed and double with a second worker and beat
        ports = [("web console", host, _port(opts["addr"], 8000))]
        if not opts["no_sandbox"]:
            sandbox = urlsplit(settings.HUB["SANDBOX_URL"])
            ports.append(("sandbox", sandbox.hostname or "127.0.0.1", sandbox.port or 80))
        for name, h, p in ports:
            if port_in_use(h, p):
                raise CommandError(
                    f"port {p} on {h} (the {name}) is already in use — is another `./hub up` running? "
                    f"Stop it first, or choose other ports: --addr 127.0.0.1:PORT for the web console, "
                    f"HUB_SANDBOX_URL for the sandbox. Nothing was started."
                )
        self.children: list[tuple[str, subprocess.Popen]] = []
        # SIGTERM (process managers, `kill`) stops the children too, like Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        py = sys.executable
        try:
            if not opts["no_sandbox"]:
                sandbox_url = settings.HUB["SANDBOX_URL"]
                self.allow_outbound(urlsplit(sandbox_url).hostname or "", env)
                port = sandbox_url.rsplit(":", 1)[-1].split("/")[0]
                self.spawn("sandbox", [py, "-m", "connectors.sandbox", "--port", port], env)
                self.wait_http(f"{sandbox_url}/_sandbox/health", "sandbox")
            call_command("migrate", interactive=False, verbosity=0)
            call_command("setup_beat")
            call_command("setup_alerts")  # shipped alert rules (missing ones only)
            if not opts["no_seed"]:
                call_command(
                    "seed_demo", storefront=opts["storefront"], master=opts["master"], hub_url=f"http://{opts['addr']}"
                )
            # one worker per queue (integration_hub/core/queues.py): stock pushes never hold up orders
            for name, queue, concurrency in (
                ("worker-orders", queues.ORDERS, 2),
                ("worker-stock", queues.STOCK, 2),
                ("worker", queues.DEFAULT, opts["concurrency"]),
            ):
                self.spawn(
                    name,
                    [
                        py,
                        "-m",
                        "celery",
                        "-A",
                        "integration_hub",
                        "worker",
                        "-Q",
                        queue,
                        "-n",
                        f"{name}@%h",
                        "-c",
                        str(concurrency),
                        "-l",
                        "INFO",
                        "--without-gossip",
                        "--without-mingle",
                    ],
                    env,
                )
            self.spawn("beat", [py, "-m", "celery", "-A", "integration_hub", "beat", "-l", "INFO"], env)
            self.spawn("web", [py, "manage.py", "runserver", opts["addr"], "--noreload"], env)
            self.wait_http(f"http://{opts['addr']}/accounts/login/", "web console")
            self.stdout.write(
                self.style.SUCCESS(
                    f"\nIntegration Hub is running: http://{opts['addr']}/  (admin: http://{opts['addr']}/admin/)\n"
                    "Log in as admin / ops / cx / finance with password 'hub-demo'. Ctrl-C stops everything.\n"
                )
            )
            self.supervise()
        except KeyboardInterrupt:
            self.stdout.write("\nstopping …")
        finally:
            self.stop_all()

    def allow_outbound(self, host: str, env: dict) -> None:
        """The sandbox listens on loopback, which the outbound guard refuses by default
        (connectors/egress.py): allow exactly its host, here and in every child process."""
        allowed = [h.strip() for h in env.get("HUB_OUTBOUND_ALLOW", "").split(",") if h.strip()]
        if host and host not in allowed:
            allowed.append(host)
        env["HUB_OUTBOUND_ALLOW"] = ",".join(allowed)
        settings.HUB["OUTBOUND_ALLOW"] = env["HUB_OUTBOUND_ALLOW"]
        self.stdout.write(f"outbound allow-list (HUB_OUTBOUND_ALLOW): {env['HUB_OUTBOUND_ALLOW']}")

    def spawn(self, name, cmd, env):
        self.stdout.write(f"starting {name}: {' '.join(cmd[1:])}")
        self.children.append((name, subprocess.Popen(cmd, env=env, cwd=settings.BASE_DIR)))

    def wait_http(self, url, name, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for child_name, proc in self.children:
                if proc.poll() is not None:
                    raise CommandError(f"{child_name} exited with {proc.returncode} while waiting for {name}")
            try:
                if requests.get(url, timeout=2).status_code < 500:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise CommandError(f"{name} did not answer at {url} within {timeout}s")

    def supervise(self):
        while True:
            for name, proc in self.children:
                if proc.poll() is not None:
                    raise CommandError(f"{name} exited with code {proc.returncode}; stopping the hub")
            time.sleep(1)

    def stop_all(self):
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 15
        for _, proc in self.children:
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
