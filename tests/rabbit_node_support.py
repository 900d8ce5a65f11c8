"""A RabbitMQ node of the test run's own, next to the shared one, to stop in the middle of a test.

It is independent of the shared node (not clustered): its own node name
(celops-test-N@localhost), AMQP and distribution ports, Mnesia, logs, config,
pid file and Erlang cookie (HOME), all in a temporary directory, and no
plugins (so no management listener on 15672). ``rabbitmq-server -detached``
starts it; it is ready when its AMQP port answers and ``rabbitmqctl
await_startup`` agrees; ``rabbitmqctl stop`` stops it. The shared node is
never touched: only ``-n`` this node's name.
"""

import os
import shutil
import signal
import socket
import subprocess
import uuid

from tests.support import free_port, wait_for

RABBIT_BIN = "/usr/lib/rabbitmq/bin"  # the scripts themselves: /usr/sbin's wrappers would su to rabbitmq


def available():
    return os.geteuid() == 0 and os.path.exists(os.path.join(RABBIT_BIN, "rabbitmq-server"))


class RabbitNode:
    """``start()``, ``url()`` (its default vhost), ``stop()``; one node of its own in ``directory``."""

    def __init__(self, directory):
        self.directory = directory
        self.name = f"celops-test-{uuid.uuid4().hex[:6]}@localhost"
        self.port, self.dist_port = free_port(), free_port()
        self.pid_file = os.path.join(directory, "node.pid")

    def url(self, user="guest", password="guest"):
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}//"

    def _env(self):
        path = str(self.directory)
        return dict(os.environ, HOME=path, RABBITMQ_NODENAME=self.name, RABBITMQ_NODE_PORT=str(self.port),
                    RABBITMQ_DIST_PORT=str(self.dist_port), RABBITMQ_MNESIA_BASE=os.path.join(path, "mnesia"),
                    RABBITMQ_LOG_BASE=os.path.join(path, "log"), RABBITMQ_PID_FILE=self.pid_file,
                    RABBITMQ_CONFIG_FILE=os.path.join(path, "rabbitmq.conf"),
                    RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(path, "enabled_plugins"),
                    RABBITMQ_CONF_ENV_FILE=os.path.join(path, "rabbitmq-env.conf"),
                    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}")

    def start(self, timeout=120):
        os.makedirs(self.directory, exist_ok=True)
        files = {"rabbitmq.conf": f"listeners.tcp.local = 127.0.0.1:{self.port}\n", "enabled_plugins": "[].\n",
                 "rabbitmq-env.conf": ""}  # an empty env file: not /etc/rabbitmq's, which names the shared node
        for name, content in files.items():
            with open(os.path.join(self.directory, name), "w") as out:
                out.write(content)
        subprocess.run([os.path.join(RABBIT_BIN, "rabbitmq-server"), "-detached"], env=self._env(), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        wait_for(self.answers, timeout, f"RabbitMQ node {self.name} on port {self.port}")
        self.ctl("await_startup")
        return self

    def answers(self):
        """The AMQP port answers a protocol header with Connection.Start."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                return sock.recv(1) == b"\x01"
        except OSError:
            return False

    def ctl(self, *args, timeout=60):
        return subprocess.run([os.path.join(RABBIT_BIN, "rabbitmqctl"), "-n", self.name, *args], env=self._env(),
                              check=True, capture_output=True, text=True, timeout=timeout)

    def stop(self):
        """``rabbitmqctl stop``; the pid file's process is killed if that fails (a node half started)."""
        try:
            self.ctl("stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            try:
                with open(self.pid_file) as handle:
                    os.kill(int(handle.read().strip()), signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def remove(self):
        shutil.rmtree(self.directory, ignore_errors=True)
