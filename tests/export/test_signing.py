"""Engine signing: keygen, sign, and --trusted-key refusing what no trusted key approved."""
import json
import shutil
from pathlib import Path

import pytest
from commands import cli

from dcube_edge import runtimes
from dcube_edge.errors import UserError

signing = pytest.importorskip("dcube_edge.runtimes.signing")
pytest.importorskip("cryptography", reason="signing needs the `sign` extra (cryptography)")


@pytest.fixture()
def signed(ort_engine, tmp_path):
    engine = tmp_path / "engine"
    shutil.copytree(ort_engine, engine)
    cli("keygen", "--out", tmp_path / "hospital.key", check=0)
    cli("keygen", "--out", tmp_path / "other.key", check=0)
    res = cli("sign", engine, "--key", tmp_path / "hospital.key", check=0)
    assert "signed" in res.stdout and (engine / "manifest.sig").is_file()
    return engine, tmp_path / "hospital.key.pub", tmp_path / "other.key.pub"


def test_a_signed_engine_runs_under_its_trusted_key(signed, demo_data):
    engine, trusted, _ = signed
    good = sorted((demo_data / "val" / "benign").iterdir())[:2]
    res = cli("classify", engine, *good, "--trusted-key", trusted, "--json", "-", check=0)
    assert all(p["error"] is None for p in json.loads(res.stdout)["predictions"])
    assert (Path(str(trusted)[:-4])).stat().st_mode & 0o077 == 0  # the private key is the owner's alone


def test_untrusted_unsigned_or_edited_engines_are_refused(signed, ort_engine, demo_data):
    engine, trusted, other = signed
    good = sorted((demo_data / "val" / "benign").iterdir())[:1]
    res = cli("classify", engine, *good, "--trusted-key", other, check=2)
    assert "not signed by a trusted key" in res.stderr
    res = cli("classify", ort_engine, *good, "--trusted-key", trusted, check=2)
    assert "is not signed" in res.stderr
    m = json.loads((engine / "manifest.json").read_text())
    m["created"] = "2020-01-01T00:00:00+00:00"  # a change the file hashes and bound facts do not see
    (engine / "manifest.json").write_text(json.dumps(m))
    runtimes.read(engine)  # still a valid engine ...
    with pytest.raises(runtimes.EngineError, match="not signed by a trusted key"):
        runtimes.read(engine, trusted_keys=[trusted])  # ... but no longer the approved one


def test_keygen_never_overwrites_a_key(tmp_path):
    signing.keygen(tmp_path / "k")
    with pytest.raises(UserError, match="refusing to overwrite"):
        signing.keygen(tmp_path / "k")
