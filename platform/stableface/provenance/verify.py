"""Everything a video says about where it came from: watermark, content credentials, container tags.

:func:`inspect_video` is what ``stableface audit`` runs per video and ``stableface verify`` per file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stableface.provenance.config import WatermarkConfig
from stableface.provenance.credentials import CredentialFinding, CredentialState, read_credentials
from stableface.provenance.watermark import WatermarkFinding, detect_file

PROVENANCE_COLUMNS = (
    "synthetic", "watermark", "watermark_payload", "watermark_dub_id", "watermark_model_id", "watermark_z",
    "watermark_scale", "watermark_frames", "watermark_corrected_bits", "credentials", "credentials_ai_generated", "credentials_signer",
    "credentials_problems", "tagged_synthetic",
)  # fmt: skip


@dataclass
class ProvenanceFinding:
    """One video's provenance: the invisible watermark, the C2PA manifest and the mp4 tags."""

    watermark: WatermarkFinding
    credentials: CredentialFinding
    tagged_synthetic: bool  # the container's tags (stableface's comment/description) say synthetic

    @property
    def synthetic(self) -> bool:
        """Any evidence that this tool made the video (the watermark alone survives re-encoding)."""
        signed_ai = self.credentials.state == CredentialState.VALID and self.credentials.ai_generated
        return self.watermark.present or signed_ai or self.tagged_synthetic

    def to_row(self) -> dict:
        return {
            "synthetic": self.synthetic,
            **self.watermark.to_row(),
            **self.credentials.to_row(),
            "tagged_synthetic": self.tagged_synthetic,
        }

    def describe(self) -> str:
        """A few lines for people (``stableface verify``)."""
        mark = self.watermark
        if mark.present:
            watermark = (
                f"present: {mark.payload.describe()} (peak {mark.peak_z:.1f} sd, scale {mark.scale:g}, "
                f"{mark.frames} frames)"
            )
        else:
            watermark = f"absent ({mark.reason}; best peak {mark.peak_z:.1f} sd over {mark.frames} frames)"
        creds = self.credentials
        credentials = str(creds.state)
        if creds.state == CredentialState.VALID:
            credentials += (
                f", AI-generated: {'yes' if creds.ai_generated else 'no'}, signer: {creds.signer or '-'}"
            )
            credentials += "" if creds.trusted else " (not on a trust list)"
            if creds.facts:
                facts = creds.facts
                credentials += (
                    f"\n  model version: {facts.get('model_version')}, source sha256: "
                    f"{str(facts.get('source_sha256'))[:16]}..., speech sha256: {str(facts.get('speech_sha256'))[:16]}..."
                )
        elif creds.problems:
            credentials += ": " + "; ".join(creds.problems)
        return "\n".join(
            [
                f"synthetic:   {'yes' if self.synthetic else 'no evidence found'}",
                f"watermark:   {watermark}",
                f"credentials: {credentials}",
                f"mp4 tags:    {'say synthetic' if self.tagged_synthetic else 'none of ours'}",
            ]
        )


def _tagged_synthetic(path: str | Path) -> bool:
    import av

    from stableface.inference.composite import read_provenance

    with av.open(str(path)) as container:
        return read_provenance(dict(container.metadata)) is not None


def inspect_video(path: str | Path, config: WatermarkConfig) -> ProvenanceFinding:
    """Watermark, credentials and tags of a local video file (unreadable media raise InputError)."""
    return ProvenanceFinding(
        watermark=detect_file(path, config),
        credentials=read_credentials(path),
        tagged_synthetic=_tagged_synthetic(path),
    )
