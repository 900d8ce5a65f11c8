"""A real Redis Sentinel setup for the tests: a master, a replica and three Sentinels on free ports.

Everything is started by the test run itself (``redis-server --sentinel``) and
is ready when the Sentinels agree on the master and know each other and the
replica, checked by polling.
"""

import os
import socket
import subprocess

from tests.support import RedisServer, free_port, wait_for

MASTER_NAME = "celops-master"


def command(port, *args, password=None):
    """One Redis command over a plain socket (AUTH first with ``password``), for set-up checks."""
    import hiredis

    commands = ([("AUTH", password)] if password else []) + [args]
    reader = hiredis.Reader()
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
        sock.sendall(b"".join(hiredis.pack_command(each) for each in commands))
        while len(replies) < len(commands):
            reply = reader.gets()
            if reply is not False:
                replies.append(reply)
                continue
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the server")
            reader.feed(data)
    return replies[-1]


class SentinelCluster:
    """``master``, ``replica`` (RedisServer) and ``sentinel_ports``; ``failover()`` promotes the replica."""

    def __init__(self, directory, sentinels=3, sentinel_password=None, master_password=None):
        self.directory = directory
        self.sentinel_password = sentinel_password
        self.master_password = master_password
        auth = ["--requirepass", master_password, "--masterauth", master_password] if master_password else []
        self.master = RedisServer(os.path.join(directory, "master"), extra_args=auth)
        self.replica = RedisServer(os.path.join(directory, "replica"), extra_args=auth)
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinels = []

    def url(self, scheme="sentinel", db=0):
        """celery's form: ``sentinel://:pw@h:p;sentinel://...``, the master's password in each."""
        credentials = f":{self.master_password}@" if self.master_password else ""
        return ";".join(f"{scheme}://{credentials}127.0.0.1:{port}/{db}" for port in self.sentinel_ports)

    def transport_options(self):
        options = {"master_name": MASTER_NAME}
        if self.sentinel_password:
            options["sentinel_kwargs"] = {"password": self.sentinel_password}
        return options

    def start(self):
        self.master.start()
        self.replica.extra_args += ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.replica.start()
        self.sentinels = [self._start_sentinel(port) for port in self.sentinel_ports]
        wait_for(self._ready, 30, "the Sentinels to agree on the master and know the replica")
        return self

    def _start_sentinel(self, port):
        directory = os.path.join(self.directory, f"sentinel-{port}")
        os.makedirs(directory, exist_ok=True)
        lines = [f"port {port}", "bind 127.0.0.1", f"dir {directory}",
                 f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2",
                 f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
                 f"sentinel failover-timeout {MASTER_NAME} 5000"]
        if self.master_password:
            lines.append(f"sentinel auth-pass {MASTER_NAME} {self.master_password}")
        if self.sentinel_password:
            lines += [f"requirepass {self.sentinel_password}", f"sentinel sentinel-pass {self.sentinel_password}"]
        config = os.path.join(directory, "sentinel.conf")  # Sentinel rewrites it: a file of its own
        with open(config, "w") as out:
            out.write("\n".join(lines) + "\n")
        return subprocess.Popen(["redis-server", config, "--sentinel", "--logfile", os.path.join(directory, "log")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ask(self, port, *args):
        return command(port, *args, password=self.sentinel_password)

    def master_port(self):
        """The master's port as the first Sentinel that answers sees it, or None."""
        for port in self.sentinel_ports:
            try:
                reply = self.ask(port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME)
            except (OSError, ConnectionError):
                continue
            if isinstance(reply, list):
                return int(reply[1])
        return None

    def _ready(self):
        try:
            others = [self.ask(port, "SENTINEL", "sentinels", MASTER_NAME) for port in self.sentinel_ports]
            replicas = [self.ask(port, "SENTINEL", "replicas", MASTER_NAME) for port in self.sentinel_ports]
        except (OSError, ConnectionError):
            return False
        if not all(isinstance(reply, list) for reply in others + replicas):
            return False
        return (all(len(known) == len(self.sentinel_ports) - 1 for known in others)
                and all(len(known) == 1 for known in replicas) and self.master_port() == self.master.port)

    def failover(self, timeout=30):
        """Promote the replica (SENTINEL FAILOVER); wait until the Sentinels name it master; returns its port."""
        before = self.master_port()
        self.ask(self.sentinel_ports[0], "SENTINEL", "FAILOVER", MASTER_NAME)
        wait_for(lambda: self.master_port() not in (None, before), timeout, "the Sentinel failover")
        return self.master_port()

    def stop(self):
        for process in self.sentinels:
            if process.poll() is None:
                process.terminate()
                process.wait(10)
        self.replica.stop()
        self.master.stop()
