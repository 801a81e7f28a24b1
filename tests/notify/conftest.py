"""Real servers on 127.0.0.1 for the notification tests, and shared helpers.

Every server binds 127.0.0.1 on a free port and is stopped after its test;
proxy variables are removed so that urllib talks to 127.0.0.1 directly.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from framework0_errors.categories import ErrorCategory, ErrorSeverity
from framework0_errors.classify import Classification
from framework0_errors.config.models import NotificationsConfig
from framework0_errors.notify import NotificationEvent, Notifier
from framework0_errors.records import ErrorRecord
from framework0_errors.redact import Redactor

LOCALHOST = "127.0.0.1"
START = 1_700_000_000.0  # 2023-11-14T22:13:20Z


# ---------------------------------------------------------------- time


class FakeClock:
    """An injected clock that only moves when told, and a sleep that moves it."""

    def __init__(self, start: float = START) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at :data:`START`."""
    return FakeClock()


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep urllib from sending test traffic through a proxy."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


# ---------------------------------------------------------------- records and events


def make_record(
    exc: BaseException,
    *,
    step: str = "load_orders",
    category: ErrorCategory = ErrorCategory.NETWORK,
    severity: ErrorSeverity = ErrorSeverity.HIGH,
    hint: str | None = "Check that the orders API is up",
    redactor: Redactor | None = None,
    attempt: int = 3,
    when: float = START,
) -> ErrorRecord:
    """An error record made the way the runner makes them."""
    return ErrorRecord.from_exception(
        exc,
        classification=Classification(category, severity, transient=True, hint=hint),
        run_id="run-42",
        recipe="orders.yaml",
        step=step,
        attempt=attempt,
        redactor=redactor,
        clock=lambda: when,
    )


def failed_event(record: ErrorRecord, **changes: Any) -> NotificationEvent:
    """A ``failed`` event of ``record``'s step."""
    values: dict[str, Any] = {
        "recipe": record.recipe,
        "step": record.step,
        "run_id": record.run_id,
        "outcome": "failed",
        "record": record,
        "attempts": record.attempt,
    }
    values.update(changes)
    return NotificationEvent(**values)


@pytest.fixture
def build_notifier() -> Iterator[Callable[..., Notifier]]:
    """Build notifiers from config mappings; all are closed after the test."""
    made: list[Notifier] = []

    def build(config: dict[str, Any], **kwargs: Any) -> Notifier:
        notifier = Notifier.from_config(NotificationsConfig.model_validate(config), **kwargs)
        made.append(notifier)
        return notifier

    yield build
    for notifier in made:
        notifier.close()


# ---------------------------------------------------------------- HTTP


@dataclass
class Request:
    """One request the HTTP sink received."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpSink:
    """Records POSTs; answers each with the next queued status (200 when none is queued)."""

    requests: list[Request] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)
    port: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    def url(self, path: str = "/hook") -> str:
        return f"http://{LOCALHOST}:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Wait (real time) until ``count`` requests have arrived."""
        with self.cond:
            return self.cond.wait_for(lambda: len(self.requests) >= count, timeout)

    def bodies(self) -> list[str]:
        return [r.body.decode("utf-8") for r in self.requests]


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    """An HTTP server on 127.0.0.1 that records webhook and Slack posts."""
    sink = HttpSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with sink.cond:
                sink.requests.append(Request(self.path, dict(self.headers.items()), body))
                status = sink.statuses.popleft() if sink.statuses else 200
                sink.cond.notify_all()
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", sink.url("/elsewhere"))
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    server = ThreadingHTTPServer((LOCALHOST, 0), Handler)
    sink.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield sink
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        yield sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        sock.listen(8)
        yield sock.getsockname()[1]


# ---------------------------------------------------------------- SMTP


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (aiosmtpd needs a number)."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class MailSink:
    """Records the mails an SMTP server received; refuses ``nobody@`` recipients."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    data_reply: str = "250 OK"
    port: int = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.startswith("nobody@"):
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if not self.data_reply.startswith("250"):
            return self.data_reply
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append(envelope)
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        self.logins.append((login, password))
        # handled=False makes the server answer 535 itself.
        return AuthResult(success=(login, password) == ("mailer", "s3cret-pass"), handled=False)


@contextlib.contextmanager
def running_smtp(**kwargs: Any) -> Iterator[MailSink]:
    """Run an aiosmtpd server on 127.0.0.1 with ``kwargs`` for its SMTP session."""
    sink = MailSink()
    sink.port = free_port()
    controller = Controller(
        sink,
        hostname=LOCALHOST,
        port=sink.port,
        server_hostname="localhost",
        authenticator=sink.authenticate,
        **kwargs,
    )
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
def smtp_sink() -> Iterator[MailSink]:
    """A plain SMTP server on 127.0.0.1 that also takes a login without TLS."""
    with running_smtp(auth_require_tls=False) as sink:
        yield sink


@dataclass
class Certificate:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """Generate a self-signed certificate (needs ``cryptography``; skipped without it)."""
    pytest.importorskip("cryptography")
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "framework0 test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(LOCALHOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_path, key_path)
