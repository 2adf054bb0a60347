"""Engine signing: an Ed25519 signature (``cryptography``, extra ``sign``) over the exact bytes of
``manifest.json`` — which holds the sha256 of every engine file and, through :mod:`.facts`, is bound to
the model file — kept beside it as ``manifest.sig``. A workstation given ``--trusted-key`` refuses any
engine that no trusted key signed, so only engines someone approved are run."""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from dcube_edge.errors import BackendUnavailable, UserError

from .files import write_bytes

SIGNATURE = "manifest.sig"


class Untrusted(UserError):
    """An engine no trusted key signed (the manifest reader turns it into an EngineError)."""
INSTALL = "signing needs the cryptography package: pip install 'dcube-edge[sign]'"


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise BackendUnavailable(INSTALL) from None
    return serialization, ed25519


def key_id(public_pem: bytes) -> str:
    """A short fingerprint of a public key (sha256 of its raw bytes), to say which key signed."""
    serialization, _ = _crypto()
    raw = serialization.load_pem_public_key(public_pem).public_bytes(serialization.Encoding.Raw,
                                                                     serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def keygen(private_path: Path) -> Path:
    """A new Ed25519 key pair: ``private_path`` (PKCS#8 PEM, readable by its owner only) and
    ``private_path.pub`` (the public key to install on workstations). Never overwrites a key."""
    serialization, ed25519 = _crypto()
    public_path = private_path.with_name(private_path.name + ".pub")
    for p in (private_path, public_path):
        if p.exists():
            raise UserError(f"{p} exists; refusing to overwrite a key (choose another --out)")
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    write_bytes(private_path, private)
    private_path.chmod(0o600)
    write_bytes(public_path, public)
    return public_path


def sign(manifest: Path, private_path: Path) -> dict:
    """Sign the bytes of an engine's ``manifest.json`` with the private key; writes ``manifest.sig`` beside
    it and returns the record."""
    serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_private_key(Path(private_path).read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise UserError(f"{private_path} is not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise UserError(f"{private_path} is not an Ed25519 key; create one with `dcube-edge keygen`")
    message = Path(manifest).read_bytes()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    record = {"algorithm": "Ed25519", "signed": Path(manifest).name, "key_id": key_id(public),
              "signature": base64.b64encode(key.sign(message)).decode()}
    write_bytes(Path(manifest).with_name(SIGNATURE), (json.dumps(record, indent=2) + "\n").encode())
    return record


def verify(manifest: Path, trusted: list[Path]) -> str:
    """The key id of the trusted key that signed this manifest; :class:`Untrusted` otherwise."""
    serialization, _ = _crypto()
    from cryptography.exceptions import InvalidSignature

    engine_dir = Path(manifest).parent
    sig_path = Path(manifest).with_name(SIGNATURE)
    if not sig_path.is_file():
        raise Untrusted(f"{engine_dir} is not signed ({SIGNATURE} missing) and --trusted-key was given; sign it "
                          "with `dcube-edge sign ENGINE --key KEY` on the machine that approves engines")
    try:
        record = json.loads(sig_path.read_text())
        signature = base64.b64decode(record["signature"], validate=True)
    except (ValueError, KeyError, TypeError) as e:
        raise Untrusted(f"{sig_path} is not a dcube-edge signature ({e}); sign the engine again") from None
    message = Path(manifest).read_bytes()
    for path in trusted:
        try:
            public = serialization.load_pem_public_key(Path(path).read_bytes())
        except (OSError, ValueError) as e:
            raise UserError(f"--trusted-key {path} is not a readable PEM public key ({e})") from None
        try:
            public.verify(signature, message)
            return key_id(Path(path).read_bytes())
        except (InvalidSignature, TypeError, AttributeError):
            continue
    raise Untrusted(f"{engine_dir} is not signed by a trusted key (signature by key {record.get('key_id', '?')}, "
                      "or the manifest changed after signing); refusing it")

