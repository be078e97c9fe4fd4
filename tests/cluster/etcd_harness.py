"""Real etcd processes for the cluster tests (unique module name: imported via sys.path).

Every member listens on 127.0.0.1 only, on ports the kernel just handed out, with its data in a
directory the caller owns. `EtcdCluster` is a context manager: leaving it kills every member it
started, whatever happened inside.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from felis.datastore.etcd import EtcdDatastore
from felis.datastore.url import EtcdConfig, parse_url

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Tls:
    """Files of a test PKI: one CA, a server certificate for 127.0.0.1, a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing etcd trusts


def make_pki(directory: Path) -> Tls:
    """Generate the PKI with openssl (fast EC keys)."""
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    def ca(name: str) -> None:
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key")
        run(
            "req",
            "-x509",
            "-new",
            "-key",
            f"{name}.key",
            "-subj",
            f"/CN=felis test {name}",
            "-days",
            "2",
            "-out",
            f"{name}.crt",
        )

    def leaf(name: str, ext: str) -> None:
        (directory / f"{name}.ext").write_text(ext)
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key")
        run("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}", "-out", f"{name}.csr")
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.crt",
        )

    ca("ca")
    ca("other-ca")
    leaf(
        "server",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )
    leaf("client", "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n")
    return Tls(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.crt",
    )


@dataclass
class Member:
    name: str
    data_dir: Path
    client_port: int
    peer_port: int
    scheme: str = "http"
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


@dataclass
class EtcdCluster:
    """One or more etcd members on loopback; see the module docstring."""

    size: int = 1
    tls: Tls | None = None
    extra_args: tuple[str, ...] = ()
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="felis-etcd-")))
    members: list[Member] = field(default_factory=list)

    def __post_init__(self) -> None:
        scheme = "https" if self.tls else "http"
        for index in range(self.size):
            name = f"m{index}"
            self.members.append(Member(name, self.root / name, free_port(), free_port(), scheme))

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def url(self) -> str:
        """The felis datastore URL for every member."""
        scheme = "etcd+https" if self.tls else "etcd"
        return f"{scheme}://" + ",".join(f"127.0.0.1:{m.client_port}" for m in self.members)

    def _command(self, member: Member, state: str) -> list[str]:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        command = [
            ETCD,
            "--name",
            member.name,
            "--data-dir",
            str(member.data_dir),
            "--listen-client-urls",
            member.client_url,
            "--advertise-client-urls",
            member.client_url,
            "--listen-peer-urls",
            member.peer_url,
            "--initial-advertise-peer-urls",
            member.peer_url,
            "--initial-cluster",
            initial,
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            f"felis-{self.root.name}",
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--log-level",
            "warn",
            "--logger",
            "zap",
            *self.extra_args,
        ]
        if self.tls:
            command += [
                "--cert-file",
                str(self.tls.server_cert),
                "--key-file",
                str(self.tls.server_key),
                "--trusted-ca-file",
                str(self.tls.ca),
                "--client-cert-auth",
            ]
        return command

    def start_member(self, member: Member) -> None:
        state = "existing" if member.data_dir.exists() else "new"
        member.log_path = self.root / f"{member.name}.log"
        log = member.log_path.open("ab")
        try:
            member.process = subprocess.Popen(
                self._command(member, state),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "ETCD_UNSUPPORTED_ARCH": ""},
                start_new_session=True,
            )
        finally:
            log.close()

    def start(self) -> EtcdCluster:
        for member in self.members:
            self.start_member(member)
        self.wait_healthy()
        return self

    def stop_member(self, member: Member, sig: int = signal.SIGKILL) -> None:
        process = member.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        member.process = None

    def restart_member(self, member: Member) -> None:
        self.stop_member(member)
        self.start_member(member)

    def running(self) -> list[Member]:
        return [m for m in self.members if m.process is not None and m.process.poll() is None]

    def wait_healthy(
        self, members: list[Member] | None = None, timeout: float = START_TIMEOUT
    ) -> None:
        """Poll every member's /health until each reports a healthy cluster (has a leader)."""
        wanted = members if members is not None else self.members
        deadline = time.monotonic() + timeout
        pending = list(wanted)
        while pending:
            for member in list(pending):
                if member.process is not None and member.process.poll() is not None:
                    raise RuntimeError(f"etcd {member.name} exited: {self.log_tail(member)}")
                if self._healthy(member):
                    pending.remove(member)
            if pending and time.monotonic() > deadline:
                raise RuntimeError(
                    f"etcd members {[m.name for m in pending]} not healthy within {timeout}s: "
                    + " | ".join(self.log_tail(m) for m in pending)
                )
            if pending:
                time.sleep(0.05)

    def _healthy(self, member: Member) -> bool:
        try:
            return bool(self.etcd_request(member, "/health").get("health") == "true")
        except (OSError, ValueError):
            return False

    def etcd_request(self, member: Member, path: str, body: Any = None) -> dict[str, Any]:
        """A raw HTTP request to one member (independent of felis' own client)."""
        import ssl

        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=str(self.tls.ca))
            context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(member.client_url + path, data=data)
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                result: dict[str, Any] = json.loads(response.read())
                return result
        except urllib.error.HTTPError as err:
            raise OSError(f"HTTP {err.code}") from None

    def log_tail(self, member: Member, lines: int = 5) -> str:
        if member.log_path is None or not member.log_path.exists():
            return "(no log)"
        return " / ".join(member.log_path.read_text(errors="replace").splitlines()[-lines:])

    def etcdctl(self, *args: str, members: list[Member] | None = None) -> str:
        """Run etcdctl (API v3) against the given members (default: all running)."""
        targets = members if members is not None else self.running()
        command = [ETCDCTL, "--endpoints", ",".join(m.client_url for m in targets)]
        if self.tls:
            command += [
                "--cacert",
                str(self.tls.ca),
                "--cert",
                str(self.tls.client_cert),
                "--key",
                str(self.tls.client_key),
            ]
        result = subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "ETCDCTL_API": "3"},
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def get_json(self, key: str) -> dict[str, Any] | None:
        """etcdctl's view of one key: {'value': str, 'mod_revision': int} or None."""
        out = json.loads(self.etcdctl("get", key, "-w", "json"))
        kvs = out.get("kvs") or []
        if not kvs:
            return None
        kv = kvs[0]
        return {
            "value": base64.b64decode(kv["value"]).decode(),
            "mod_revision": int(kv["mod_revision"]),
        }

    def close(self) -> None:
        for member in self.members:
            with contextlib.suppress(OSError):
                self.stop_member(member)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


def etcd_store(cluster: EtcdCluster, **kwargs: float) -> EtcdDatastore:
    """A felis etcd datastore on every member of `cluster` (TLS files included)."""
    config = parse_url(cluster.url, env={})
    assert isinstance(config, EtcdConfig)
    if cluster.tls:
        config = replace(
            config,
            ca_cert_file=str(cluster.tls.ca),
            cert_file=str(cluster.tls.client_cert),
            key_file=str(cluster.tls.client_key),
        )
    return EtcdDatastore(config, **kwargs)


def wipe(cluster: EtcdCluster) -> None:
    """Delete every key (between tests sharing one etcd)."""
    cluster.etcdctl("del", "", "--from-key")


def poll(condition: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.01)
