"""The SDK and pyarrow.flight over TLS, against a coordinator and two workers that serve
TLS on every port and talk to each other with client certificates from the cluster CA
(mTLS, no shared secret). The certificates are made here."""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
import tempfile
from collections.abc import Iterator

import polars as pl
import pytest

import polaroid as pr
from conftest import Process

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: pathlib.Path, stem: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_file), str(key_file)


def make_ca(directory: pathlib.Path, stem: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, str]:
    """A self-signed CA; its certificate's path as the third value."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(stem))
        .issuer_name(_name(stem))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return certificate, key, _write(directory, stem, certificate, key)[0]


def issue(
    directory: pathlib.Path, stem: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> tuple[str, str]:
    """A certificate for localhost and 127.0.0.1 that `ca` signed, to serve and to dial."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _write(directory, stem, certificate, key)


class TlsCluster:
    """A coordinator and two workers serving TLS, with mTLS between them."""

    def __init__(self, root: pathlib.Path) -> None:
        ca, ca_key, self.ca_file = make_ca(root, "cluster-ca")
        cert_file, key_file = issue(root, "component", ca, ca_key)
        _, _, self.foreign_ca_file = make_ca(root, "foreign-ca")
        env = {
            "POLAROID_TLS_CERT_FILE": cert_file,
            "POLAROID_TLS_KEY_FILE": key_file,
            "POLAROID_TLS_CLIENT_CA_FILE": self.ca_file,
            "POLAROID_TLS_CA_FILE": self.ca_file,
        }
        (root / "state").mkdir()
        self.coordinator = Process(
            "coordinator", "--worker-lease-secs", "2", "--membership-refresh-secs", "0.2", env=env
        )
        self.workers = [
            Process(
                "worker", "--coordinator-url", f"https://{self.coordinator.address}",
                "--load-report-interval-secs", "0.3", "--handle-store", "external",
                "--state-dir", str(root / "state"), "--data-root", str(root), env=env,
            )
            for _ in range(2)
        ]
        self.coordinator.wait_ready(ca_file=self.ca_file)

    @property
    def url(self) -> str:
        return f"https://{self.coordinator.address}"

    def stop(self) -> None:
        for process in [*self.workers, self.coordinator]:
            process.stop()


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[TlsCluster]:
    with tempfile.TemporaryDirectory(prefix="polaroid-tls-") as root:
        cluster = TlsCluster(pathlib.Path(root))
        try:
            yield cluster
        finally:
            cluster.stop()


def test_the_sdk_connects_over_tls(tls_cluster: TlsCluster) -> None:
    rows = pl.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "c"]})
    with pr.connect(tls_cluster.url, ca_file=tls_cluster.ca_file) as conn:
        assert conn.target == tls_cluster.coordinator.address
        frame = pr.from_polars(rows, connection=conn).filter(pr.col("id") > 1)
        assert frame.collect().equals(rows.filter(pl.col("id") > 1))
    # The same with the CA as bytes and `tls=True` on a bare address.
    with open(tls_cluster.ca_file, "rb") as pem:
        roots = pem.read()
    with pr.Connection(tls_cluster.coordinator.address, tls=True, root_certificates=roots) as conn:
        assert pr.from_polars(rows, connection=conn).collect().equals(rows)


def test_plaintext_and_untrusting_clients_fail(tls_cluster: TlsCluster) -> None:
    rows = pl.DataFrame({"id": [1]})
    with pr.Connection(tls_cluster.coordinator.address, retries=0, timeout=10) as plaintext:
        with pytest.raises(pr.PolaroidError):
            pr.from_polars(rows, connection=plaintext)
    with pr.Connection(tls_cluster.url, ca_file=tls_cluster.foreign_ca_file, retries=0, timeout=10) as foreign:
        with pytest.raises(pr.UnavailableError):
            pr.from_polars(rows, connection=foreign)
    with pytest.raises(ValueError, match="contradicts"):
        pr.Connection(tls_cluster.url, tls=False)


def test_large_results_come_over_flight_from_workers_over_tls(tls_cluster: TlsCluster, monkeypatch) -> None:  # noqa: ANN001
    import polaroid.connection

    flight = pytest.importorskip("pyarrow.flight")
    # Far below the SDK's default, so that a few MiB already move to Flight.
    monkeypatch.setattr(polaroid.connection, "FLIGHT_REST_BYTES", 1024 * 1024)
    rows = (polaroid.connection.FLIGHT_PROBE_BYTES + 4 * 1024 * 1024) // 16
    local = pl.DataFrame({"id": pl.int_range(0, rows, eager=True)})
    expected = local.with_columns(y=pl.col("id") + 1)
    with pr.connect(tls_cluster.url, ca_file=tls_cluster.ca_file) as conn:
        large = pr.from_polars(local, connection=conn).with_columns(y=pr.col("id") + 1)
        assert large.collect().equals(expected)
        fetcher = conn._flight
        assert fetcher is not None
        workers = [uri for uri in fetcher._clients if uri != fetcher._target]
        assert workers and all(uri.startswith("grpc+tls://") for uri in workers), workers
        assert not fetcher._unreachable

        # pyarrow's own client: the coordinator names the owning worker's TLS port.
        with open(tls_cluster.ca_file, "rb") as pem:
            roots = pem.read()
        coordinator = flight.connect(f"grpc+tls://{tls_cluster.coordinator.address}", tls_root_certs=roots)
        info = coordinator.get_flight_info(flight.FlightDescriptor.for_path(large.handle))
        [endpoint] = info.endpoints
        location = endpoint.locations[0].uri.decode()
        assert location.startswith("grpc+tls://127.0.0.1:"), location
        with flight.connect(location, tls_root_certs=roots) as worker:
            assert pl.from_arrow(worker.do_get(endpoint.ticket).read_all()).equals(expected)
        coordinator.close()
