"""The sandbox's self-signed certificate names the host its clients use."""

from __future__ import annotations

import ipaddress
import socket

from cryptography import x509

from sandbox.tls import write_self_signed


def names(cert_path) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(alt.get_values_for_type(x509.DNSName)), {str(a) for a in alt.get_values_for_type(x509.IPAddress)}


def test_listening_on_every_address_names_the_host_name(tmp_path):
    """In compose the sandbox listens on 0.0.0.0 and is reached as `sandbox` (its hostname)."""
    cert, _ = write_self_signed(tmp_path, "0.0.0.0")
    dns, ips = names(cert)
    assert dns == {"localhost", socket.gethostname()}
    assert ips == {"127.0.0.1"}  # 0.0.0.0 is no address a client connects to


def test_a_named_or_addressed_host_is_in_the_certificate(tmp_path):
    dns, ips = names(write_self_signed(tmp_path / "a", "sim.example")[0])
    assert dns == {"localhost", "sim.example"} and ips == {"127.0.0.1"}
    dns, ips = names(write_self_signed(tmp_path / "b", "10.1.2.3")[0])
    assert dns == {"localhost"} and ips == {"127.0.0.1", str(ipaddress.ip_address("10.1.2.3"))}
