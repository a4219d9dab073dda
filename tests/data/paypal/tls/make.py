# Makes the loopback HTTPS test certificates of tests/paypal_fetch.rs (see README.md).
import datetime
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

NOT_BEFORE = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
NOT_AFTER = datetime.datetime(2046, 1, 1, tzinfo=datetime.timezone.utc)
HOSTS = ["api.paypal.com", "api-m.paypal.com", "api.sandbox.paypal.com",
         "api-m.sandbox.paypal.com", "other.example"]

def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

def ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert

def server(ca_key, ca_cert, key):
    return (x509.CertificateBuilder().subject_name(name("api.paypal.com"))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))

pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
ca_key, ca_cert = ca("webhook-guard test TLS CA")
other_key, other_cert = ca("webhook-guard untrusted TLS CA")
key = ec.generate_private_key(ec.SECP256R1())
open("ca.pem", "wb").write(pem(ca_cert))
open("server.pem", "wb").write(pem(server(ca_key, ca_cert, key)))
open("server-untrusted.pem", "wb").write(pem(server(other_key, other_cert, key)))
open("server-key.pk8.pem", "wb").write(key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
