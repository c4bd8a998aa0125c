"""Optional TLS, bearer tokens for the Admin service (and the data plane), a separate admin port, no secrets in logs."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proxy.cli.client import Doc, SwitchyardClient
from proxy.demo.sidecar_process import free_port
from tests.conftest import SidecarFactory, sidecar_config

ADMIN_TOKEN = "admin-secret-7f3a9c"
DATA_TOKEN = "data-secret-41be02"


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code()


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The sidecar process inherits the environment: that is how the token reaches it, never via the file.
    monkeypatch.setenv("TEST_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("TEST_DATA_TOKEN", DATA_TOKEN)


def test_admin_needs_the_token_and_the_data_plane_stays_open(
    start_sidecar: SidecarFactory, tmp_path: Path, token_env: None
) -> None:
    config = sidecar_config(tmp_path / "data")
    config["server"]["auth"] = {"admin_token_env": "TEST_ADMIN_TOKEN"}
    sidecar = start_sidecar(config)
    with SwitchyardClient(sidecar.target) as anonymous:
        assert anonymous.upsert([Doc("d1", "open data plane")])
        assert _code(anonymous.status) == grpc.StatusCode.UNAUTHENTICATED
    with SwitchyardClient(sidecar.target, token="wrong") as wrong:
        assert _code(wrong.status) == grpc.StatusCode.UNAUTHENTICATED
    with SwitchyardClient(sidecar.target, token=ADMIN_TOKEN) as admin:
        # Authenticated: the call reaches the service (which has no migration configured).
        assert _code(admin.status) == grpc.StatusCode.FAILED_PRECONDITION
    assert ADMIN_TOKEN not in sidecar.log_path.read_text()


def test_data_token_protects_the_data_plane_but_not_health(
    start_sidecar: SidecarFactory, tmp_path: Path, token_env: None
) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    config = sidecar_config(tmp_path / "data")
    config["server"]["auth"] = {"data_token_env": "TEST_DATA_TOKEN"}
    sidecar = start_sidecar(config)
    with SwitchyardClient(sidecar.target) as anonymous:
        assert _code(lambda: anonymous.query("x", k=1)) == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(anonymous.channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    with SwitchyardClient(sidecar.target, token=DATA_TOKEN) as client:
        client.upsert([Doc("d1", "garlic broth")])
        assert client.query("garlic", k=1).hits[0].id == "d1"


def test_admin_on_its_own_port_is_not_served_on_the_data_port(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    config = sidecar_config(tmp_path / "data")
    admin_target = f"127.0.0.1:{free_port()}"
    config["server"]["admin_listen"] = admin_target
    sidecar = start_sidecar(config)
    with SwitchyardClient(sidecar.target) as data:
        data.upsert([Doc("d1", "text")])
        assert _code(data.status) == grpc.StatusCode.UNIMPLEMENTED
    with SwitchyardClient(admin_target) as admin:
        assert _code(admin.status) == grpc.StatusCode.FAILED_PRECONDITION
        assert _code(lambda: admin.query("x", k=1)) == grpc.StatusCode.UNIMPLEMENTED


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_tls_serves_encrypted_and_the_cli_connects_with_the_ca(
    start_sidecar: SidecarFactory, tmp_path: Path, token_env: None
) -> None:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    config = sidecar_config(tmp_path / "data")
    config["server"].update(
        listen=f"localhost:{port}",
        tls={"cert_file": str(cert), "key_file": str(key)},
        auth={"admin_token_env": "TEST_ADMIN_TOKEN"},
    )
    sidecar = start_sidecar(config, tls_ca=cert.read_bytes()).target
    with SwitchyardClient(sidecar, tls_ca=cert.read_bytes()) as client:
        client.upsert([Doc("d1", "encrypted garlic")])
        assert client.query("garlic", k=1).hits[0].id == "d1"
    with SwitchyardClient(sidecar, timeout_s=3) as plaintext:
        assert _code(lambda: plaintext.query("garlic", k=1)) == grpc.StatusCode.UNAVAILABLE
    command = [sys.executable, "-m", "proxy.cli", "migrate", "--target", sidecar, "--tls-ca", str(cert)]
    command += ["--token-env", "TEST_ADMIN_TOKEN", "status"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=os.environ)
    assert "FAILED_PRECONDITION" in result.stderr and "no migration is configured" in result.stderr


def test_missing_token_variable_is_a_config_error_at_startup(tmp_path: Path) -> None:
    from proxy.app.config import parse_config
    from proxy.app.server import _interceptors
    from proxy.core.errors import ConfigError

    config = sidecar_config(tmp_path / "data")
    config["server"]["auth"] = {"admin_token_env": "SURELY_NOT_SET_ANYWHERE"}
    with pytest.raises(ConfigError, match="SURELY_NOT_SET_ANYWHERE"):
        _interceptors(parse_config(config))
