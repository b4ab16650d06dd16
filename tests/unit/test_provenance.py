"""Provenance: the invisible watermark through real re-encodes, C2PA credentials, and stableface verify.

Signing uses a throwaway chain made at test time: C2PA validators refuse a signing certificate that is
its own issuer, so the "self-signed test certificate" is a self-signed test CA and the leaf it issues.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stableface.cli import main
from stableface.errors import InputError
from stableface.inference import DubConfig, ProvenanceConfig, dub, load_speaker_model
from stableface.io.audio import read_audio, write_audio
from stableface.io.video import VideoWriter, read_frames
from stableface.provenance.config import CredentialsConfig, WatermarkConfig
from stableface.provenance.credentials import (
    CredentialState,
    DubFacts,
    SigningStatus,
    read_credentials,
    sign_mp4,
)
from stableface.provenance.payload import PAYLOAD_BITS, Payload, model_version_id
from stableface.provenance.watermark import Watermarker, detect_file

CERT_VALID_DAYS = 7


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "StableFace tests"),
        ]
    )


def _usage(signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=signs_certificates, crl_sign=signs_certificates,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def make_test_chain(folder: Path) -> tuple[Path, Path]:
    """(PEM chain leaf-first, PEM private key of the leaf) written under ``folder``."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=CERT_VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("StableFace test CA"))
        .issuer_name(_name("StableFace test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("StableFace test signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain, private = folder / "chain.pem", folder / "signer.key"
    chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return chain, private


SOURCE_CLIP = 9  # a grid/s1 clip (75 frames, 360 x 288) the untrained model's identity did not see
MIN_PSNR_DB = 40.0


@pytest.fixture(scope="module")
def signing(tmp_path_factory) -> CredentialsConfig:
    chain, key = make_test_chain(tmp_path_factory.mktemp("certs"))
    return CredentialsConfig(cert_uri=str(chain), key_uri=str(key))


@pytest.fixture(scope="module")
def payload() -> Payload:
    return Payload.for_dub("s1-untrained-test", 0xB0B5)


@pytest.fixture(scope="module")
def marked_clip(grid_clips, payload, tmp_path_factory):
    """(unmarked frames, path of the watermarked clip written by the video writer at its default CRF 18)."""
    frames = read_frames(grid_clips[SOURCE_CLIP])
    marker = Watermarker(payload, WatermarkConfig())
    path = tmp_path_factory.mktemp("marked") / "marked.mp4"
    _write(path, [marker.mark(frame) for frame in frames], crf=18)
    return frames, path


def _write(path: Path, frames, crf: int) -> Path:
    height, width = frames[0].shape[:2]
    with VideoWriter(path, fps=25, width=width, height=height, crf=crf, preset="veryfast") as writer:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame))
    return path


def _even(value: float) -> int:
    return int(value) // 2 * 2


def test_payload_round_trips_and_a_flipped_bit_fails_its_crc():
    payload = Payload.for_dub("v7", 0x1234)
    bits = payload.to_bits()
    assert bits.shape == (PAYLOAD_BITS,) and Payload.from_bits(bits) == payload
    assert payload.model_id == model_version_id("v7") != model_version_id("v8")
    for position in (0, 17, PAYLOAD_BITS - 1):
        flipped = bits.copy()
        flipped[position] ^= 1
        assert Payload.from_bits(flipped) is None


def test_the_mark_is_invisible_by_psnr_and_changes_luma_only(grid_clips, payload):
    from skimage.metrics import peak_signal_noise_ratio

    frames = read_frames(grid_clips[SOURCE_CLIP], max_frames=10)
    marker = Watermarker(payload, WatermarkConfig())
    for frame in frames:
        marked = marker.mark(frame)
        assert peak_signal_noise_ratio(frame, marked, data_range=255) >= MIN_PSNR_DB
        change = marked.astype(int) - frame.astype(int)  # (H, W, 3)
        unclipped = (frame > 10).all(axis=-1) & (frame < 245).all(axis=-1)
        assert np.array_equal(change[..., 0][unclipped], change[..., 1][unclipped])  # grey: R = G = B
        assert np.abs(change).max() > 0


@pytest.mark.parametrize("attack", ["reencode_crf30", "half_size", "crop_mark_corner", "cut_2s"])
def test_the_payload_survives_a_real_reencode_after_each_attack(marked_clip, payload, attack, tmp_path):
    _, path = marked_clip
    frames = read_frames(path)
    height, width = frames.shape[1:3]
    if attack == "reencode_crf30":
        attacked, crf = list(frames), 30
    elif attack == "half_size":
        size = (_even(width / 2), _even(height / 2))
        attacked, crf = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames], 23
    elif attack == "crop_mark_corner":  # the visible mark sits bottom right
        attacked, crf = list(frames[:, : _even(height * 0.8), : _even(width * 0.75)]), 23
    else:
        attacked, crf = list(frames[50:]), 23  # 2 s of 3 s gone
    finding = detect_file(_write(tmp_path / f"{attack}.mp4", attacked, crf), WatermarkConfig())
    assert finding.present and finding.payload == payload
    assert finding.scale == (0.5 if attack == "half_size" else 1.0)


def test_no_watermark_in_real_unmarked_videos_nor_under_another_key(shared_data, grid_clips, marked_clip):
    sources = [grid_clips[SOURCE_CLIP], *sorted((shared_data / "voxceleb2").glob("*.mp4"))[:2]]
    for video in sources:
        finding = detect_file(video, WatermarkConfig())
        assert not finding.present and finding.payload is None, video
    _, path = marked_clip
    assert not detect_file(path, WatermarkConfig(key="someone else's key")).present


def _dub_facts() -> DubFacts:
    return DubFacts(
        tool="stableface", tool_version="0.0-test", model_version="s1-untrained-test", speaker="s1",
        source_sha256="a" * 64, speech_sha256="b" * 64, watermark="stableface model 123 dub b0b5",
    )  # fmt: skip


def test_credentials_sign_read_back_and_a_tampered_file_fails(marked_clip, signing, tmp_path):
    _, path = marked_clip
    signed = tmp_path / "signed.mp4"
    shutil.copy(path, signed)
    assert sign_mp4(signed, _dub_facts(), signing) == SigningStatus.SIGNED
    finding = read_credentials(signed)
    assert finding.state == CredentialState.VALID and finding.ai_generated and not finding.problems
    assert (
        finding.facts["source_sha256"] == "a" * 64 and finding.facts["model_version"] == "s1-untrained-test"
    )
    assert "StableFace tests" in finding.signer
    assert len(read_frames(signed)) == len(read_frames(path))  # still a playable video

    tampered = bytearray(signed.read_bytes())
    tampered[tampered.find(b"mdat") + 4000] ^= 0xFF  # one byte of the coded frames
    (tmp_path / "tampered.mp4").write_bytes(bytes(tampered))
    broken = read_credentials(tmp_path / "tampered.mp4")
    assert broken.state == CredentialState.INVALID and any("mismatch" in p for p in broken.problems)
    assert read_credentials(path).state == CredentialState.ABSENT


def test_without_a_key_the_file_is_left_alone_and_says_unsigned(marked_clip, tmp_path):
    _, path = marked_clip
    copy = tmp_path / "copy.mp4"
    shutil.copy(path, copy)
    assert sign_mp4(copy, _dub_facts(), CredentialsConfig()) == SigningStatus.UNSIGNED
    assert copy.read_bytes() == path.read_bytes()
    with pytest.raises(InputError, match="cert_uri and key_uri go together"):
        CredentialsConfig(cert_uri="chain.pem")


def test_a_signed_dub_and_its_reencode_through_stableface_verify(
    untrained_speaker_model, grid_clips, shared_data, signing, tmp_path, capsys
):
    speech = tmp_path / "speech.wav"
    write_audio(speech, read_audio(shared_data / "speech" / "macron_12s.wav", 16_000)[: 2 * 16_000], 16_000)
    config = DubConfig(provenance=ProvenanceConfig(credentials=signing))
    model = load_speaker_model(untrained_speaker_model)
    output = tmp_path / "dub.mp4"
    result = dub(model, str(grid_clips[SOURCE_CLIP]), str(speech), str(output), config)
    row = result.to_row()
    assert row["credentials"] == "signed" and row["watermark_payload"] == result.watermark.describe()
    assert row["source_sha256"] == hashlib.sha256(grid_clips[SOURCE_CLIP].read_bytes()).hexdigest()
    assert result.stage_seconds["watermark"] > 0

    assert main(["verify", str(output), "--json"]) == 0
    original = json.loads(capsys.readouterr().out)
    assert original["synthetic"] and original["watermark"] == "present" and original["credentials"] == "valid"
    assert original["watermark_payload"] == result.watermark.describe() and original["tagged_synthetic"]

    reencoded = _write(tmp_path / "reencoded.mp4", list(read_frames(output)), crf=30)  # metadata gone too
    assert main(["verify", str(reencoded)]) == 0
    printed = capsys.readouterr().out
    assert f"present: {result.watermark.describe()}" in printed
    assert "credentials: absent" in printed and "synthetic:   yes" in printed
