"""C2PA content credentials: a signed manifest embedded in each dubbed mp4, and reading one back.

The manifest states that the video is AI-generated (a ``c2pa.created`` action whose digital source
type is IPTC's ``trainedAlgorithmicMedia``), which tool and version made it, and, in a
``org.stableface.dub`` assertion, the speaker model's version, the SHA-256 of the source video and of
the speech, and the watermark's dub id. c2pa-python (the CAI's c2pa-rs) hashes the mp4's boxes into
the claim (``c2pa.hash.bmff``) and signs it with the operator's certificate, so any change to the
file after signing makes validation fail, and re-encoding drops the manifest (the watermark stays).
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from stableface.errors import InputError
from stableface.io.storage import Storage
from stableface.provenance.config import CredentialsConfig

logger = logging.getLogger(__name__)

MIME_MP4 = "video/mp4"
AI_GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
DUB_ASSERTION = "org.stableface.dub"
HASH_CHUNK = 1 << 20
UNTRUSTED_CODE = "signingCredential.untrusted"  # no trust list configured: valid, signer unknown


class SigningStatus(enum.StrEnum):
    """What a dub's manifest row says about its content credentials."""

    SIGNED = "signed"
    UNSIGNED = "unsigned"  # no key configured: the dub carries no manifest (C2PA has no unsigned form)
    DISABLED = "disabled"  # provenance.credentials.enabled=false


class CredentialState(enum.StrEnum):
    """What reading a video's content credentials found."""

    VALID = "valid"  # signature and hashes check (the signer may not be on a trust list)
    INVALID = "invalid"  # a manifest whose signature or hashes fail: altered after signing
    ABSENT = "absent"  # no manifest (never signed, or stripped by re-encoding)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class DubFacts:
    """What the manifest states about one dub."""

    tool: str
    tool_version: str
    model_version: str
    speaker: str
    source_sha256: str
    speech_sha256: str
    watermark: str  # the watermark's payload, or "none"

    def manifest(self, title: str) -> dict:
        return {
            "claim_generator_info": [{"name": self.tool, "version": self.tool_version}],
            "title": title,
            "format": MIME_MP4,
            "assertions": [
                {
                    "label": "c2pa.actions",
                    "data": {
                        "actions": [
                            {
                                "action": "c2pa.created",
                                "digitalSourceType": AI_GENERATED,
                                "softwareAgent": {"name": self.tool, "version": self.tool_version},
                                "description": "lip-synced to new speech by a talking-face model",
                            }
                        ]
                    },
                },
                {
                    "label": DUB_ASSERTION,
                    "data": {
                        "synthetic": True,
                        "model_version": self.model_version,
                        "speaker": self.speaker,
                        "source_sha256": self.source_sha256,
                        "speech_sha256": self.speech_sha256,
                        "watermark": self.watermark,
                    },
                },
            ],
        }


def _signer(config: CredentialsConfig, storage: Storage):
    import c2pa

    certificate = storage.read_bytes(config.cert_uri)
    key = storage.read_bytes(config.key_uri)
    try:
        return c2pa.Signer.from_info(
            c2pa.C2paSignerInfo(
                alg=config.algorithm.encode(),
                sign_cert=certificate,
                private_key=key,
                ta_url=config.timestamp_url.encode() if config.timestamp_url else None,
            )
        )
    except c2pa.C2paError as error:
        raise InputError(config.cert_uri, f"cannot sign with this certificate and key: {error}") from error


def sign_mp4(
    path: str | Path, facts: DubFacts, config: CredentialsConfig, storage: Storage | None = None
) -> SigningStatus:
    """Embed a signed manifest in the mp4 at ``path`` (rewritten in place); the status for its row.

    Without a configured certificate and key the file is left as it is (``unsigned``). A certificate
    that cannot sign is the operator's input error (:class:`InputError` naming it).
    """
    import c2pa

    if not config.enabled:
        return SigningStatus.DISABLED
    if not config.signing:
        return SigningStatus.UNSIGNED
    path = Path(path)
    signed = path.with_name(path.name + ".c2pa.mp4")
    signer = _signer(config, storage or Storage())
    try:
        builder = c2pa.Builder(json.dumps(facts.manifest(path.name)))
        with open(path, "rb") as source, open(signed, "wb") as dest:
            builder.sign(signer, MIME_MP4, source, dest)
        os.replace(signed, path)
    except c2pa.C2paError as error:
        raise InputError(config.cert_uri, f"signing {path.name} failed: {error}") from error
    finally:
        signed.unlink(missing_ok=True)
        signer.close()
    return SigningStatus.SIGNED


@dataclass
class CredentialFinding:
    """What :func:`read_credentials` found in one file."""

    state: CredentialState
    ai_generated: bool = False
    signer: str = ""  # the signing certificate's subject, as c2pa reports it
    trusted: bool = False  # the signer chains to a configured trust anchor
    facts: dict | None = None  # the org.stableface.dub assertion, when present
    problems: tuple[str, ...] = ()  # failed validation codes

    def to_row(self) -> dict:
        return {
            "credentials": str(self.state),
            "credentials_ai_generated": self.ai_generated,
            "credentials_signer": self.signer,
            "credentials_problems": "; ".join(self.problems),
        }


def read_credentials(path: str | Path) -> CredentialFinding:
    """Validate the C2PA manifest of a local mp4 (absent, valid or invalid, with what it states)."""
    import c2pa

    try:
        with open(path, "rb") as handle:
            reader = c2pa.Reader(MIME_MP4, handle)
            store = json.loads(reader.json())
            state = reader.get_validation_state()
    except c2pa.C2paError as error:
        if "ManifestNotFound" in type(error).__name__ or "no JUMBF" in str(error):
            return CredentialFinding(CredentialState.ABSENT)
        return CredentialFinding(CredentialState.INVALID, problems=(f"unreadable manifest: {error}",))
    manifest = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    codes = [s.get("code", "") for s in store.get("validation_status") or []]
    problems = tuple(code for code in codes if code != UNTRUSTED_CODE)
    assertions = {a.get("label"): a.get("data", {}) for a in manifest.get("assertions", [])}
    actions = next((data for label, data in assertions.items() if str(label).startswith("c2pa.actions")), {})
    ai = any(a.get("digitalSourceType") == AI_GENERATED for a in actions.get("actions", []))
    valid = state in ("Valid", "Trusted") and not problems
    return CredentialFinding(
        state=CredentialState.VALID if valid else CredentialState.INVALID,
        ai_generated=ai,
        signer=str((manifest.get("signature_info") or {}).get("issuer", "")),
        trusted=state == "Trusted",
        facts=assertions.get(DUB_ASSERTION),
        problems=problems,
    )
