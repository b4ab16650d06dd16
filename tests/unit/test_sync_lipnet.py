"""SyncNet and LipNet up to loading weights (they cannot be downloaded here) and their score arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stableface.errors import BackendUnavailable
from stableface.face.ibug import LIPS
from stableface.metrics import lipnet, syncnet
from stableface.metrics.weights import WEIGHTS_DIR_ENV, find_weights


@pytest.fixture
def empty_weights_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    return tmp_path


# ----------------------------------------------------------------------------- SyncNet
def test_syncnet_matches_the_syncnet_v2_checkpoint_layout():
    model = syncnet.SyncNet()
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert shapes["netcnnaud.0.weight"] == (64, 1, 3, 3)
    assert shapes["netcnnaud.18.weight"] == (512, 256, 5, 4)
    assert shapes["netfcaud.0.weight"] == (512, 512) and shapes["netfcaud.3.weight"] == (1024, 512)
    assert shapes["netcnnlip.0.weight"] == (96, 3, 5, 7, 7)
    assert shapes["netcnnlip.18.weight"] == (512, 256, 1, 6, 6)
    assert shapes["netfclip.3.weight"] == (1024, 512)
    assert sum(p.numel() for p in model.parameters()) == 13_631_616


def test_syncnet_embeds_0_2_s_of_mfcc_and_five_face_frames():
    model = syncnet.SyncNet().eval()
    with torch.no_grad():
        audio = model.forward_audio(torch.randn(2, 1, 13, 20))
        video = model.forward_video(torch.rand(2, 3, 5, 224, 224) * 255)
    assert audio.shape == (2, 1024) and video.shape == (2, 1024)
    assert torch.isfinite(audio).all() and torch.isfinite(video).all()


def test_missing_weights_report_unavailable_with_the_path(empty_weights_dir):
    with pytest.raises(BackendUnavailable, match=r"^unavailable: weights not found at") as error:
        syncnet.load_syncnet()
    assert str(empty_weights_dir / "syncnet_v2.model") in str(error.value)
    with pytest.raises(BackendUnavailable, match=r"^unavailable: weights not found at") as error:
        lipnet.load_lipnet(empty_weights_dir / "elsewhere" / "lipnet.pt")
    assert "elsewhere/lipnet.pt" in str(error.value)


def test_weights_load_from_the_configured_directory(empty_weights_dir):
    torch.manual_seed(0)
    original = syncnet.SyncNet()
    torch.save(original.state_dict(), empty_weights_dir / "syncnet_v2.model")
    assert find_weights("syncnet_v2.model") == empty_weights_dir / "syncnet_v2.model"
    loaded = syncnet.load_syncnet()
    assert not loaded.training
    for name, tensor in original.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    torch.save(lipnet.LipNet().state_dict(), empty_weights_dir / "lipnet.pt")
    assert isinstance(lipnet.load_lipnet(empty_weights_dir), lipnet.LipNet)


def test_sync_c_is_median_minus_minimum_and_offset_from_the_argmin():
    result = syncnet.sync_confidence_from_distances([9.0, 8.0, 6.0, 2.0, 7.0, 8.5, 9.5])
    assert result.min_distance == 2.0
    assert result.confidence == pytest.approx(8.0 - 2.0)  # sorted: 2 6 7 [8] 8.5 9 9.5
    assert result.offset == 0
    shifted = syncnet.sync_confidence_from_distances([5.0, 1.0, 4.0, 6.0, 7.0])
    assert (shifted.offset, shifted.confidence) == (1, pytest.approx(4.0))
    with pytest.raises(ValueError, match="odd number"):
        syncnet.sync_confidence_from_distances([1.0, 2.0])


def test_offset_distances_find_a_known_lag():
    rng = np.random.default_rng(0)
    video = torch.from_numpy(rng.normal(size=(40, 8)))
    lag = 2
    audio = torch.zeros_like(video)
    audio[lag:] = video[:-lag]  # the sound of video frame t arrives at audio frame t + 2
    distances = syncnet.offset_distances(video, audio, max_offset=4)  # (40, 9)
    assert distances.shape == (40, 9)
    result = syncnet.sync_confidence_from_distances(distances[:30].mean(dim=0))
    assert result.offset == -lag  # reference convention: offset = K - argmin
    assert result.min_distance < 1e-3 and result.confidence > 1.0


def test_mfcc_matches_python_speech_features_framing_and_energy():
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.normal(size=16_000)).astype(np.float32)
    mfcc = syncnet.syncnet_mfcc(audio)
    assert mfcc.shape == (13, 1 + int(np.ceil((16_000 - 400) / 160)))  # 99 frames at 100 Hz
    # c0 is the log energy of the pre-emphasised, int16-scaled first 25 ms frame.
    signal = audio.astype(np.float64) * 32768
    emphasised = np.append(signal[0], signal[1:] - 0.97 * signal[:-1])
    power = np.abs(np.fft.rfft(emphasised[:400], 512)) ** 2 / 512
    assert mfcc[0, 0] == pytest.approx(np.log(power.sum()), rel=1e-5)
    # A louder copy shifts only the log-energy and log-mel terms, by a constant.
    louder = syncnet.syncnet_mfcc(audio * 2)
    assert np.allclose(louder[0] - mfcc[0], np.log(4.0), atol=1e-4)


def test_sync_confidence_runs_end_to_end_on_random_weights():
    torch.manual_seed(0)
    model = syncnet.SyncNet().eval()
    rng = np.random.default_rng(2)
    faces = rng.integers(0, 255, size=(9, 224, 224, 3), dtype=np.uint8)
    audio = (0.1 * rng.normal(size=int(16_000 * 9 / 25) + 800)).astype(np.float32)
    result = syncnet.sync_confidence(model, faces, audio, max_offset=2)
    assert -2 <= result.offset <= 2
    assert np.isfinite(result.confidence) and result.confidence >= 0.0


def test_face_crops_are_224_square():
    frames = np.zeros((3, 288, 360, 3), np.uint8)
    track = np.zeros((3, 68, 2))
    track[:, :, 0] = np.linspace(140, 220, 68)
    track[:, :, 1] = np.linspace(100, 200, 68)
    assert syncnet.face_crops(frames, track).shape == (3, 224, 224, 3)


# ----------------------------------------------------------------------------- LipNet
def test_lipnet_reads_75_frames_of_50x100_mouths_into_character_scores():
    model = lipnet.LipNet().eval()
    assert tuple(model.gru1.weight_ih_l0.shape) == (3 * 256, 96 * 3 * 6)  # 96 channels of 3x6 features
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 75, 50, 100))
    assert logits.shape == (1, 75, 28)  # space + 26 letters + CTC blank


def one_hot_logits(indices: list[int], n_classes: int = 28) -> np.ndarray:
    logits = np.full((len(indices), n_classes), -5.0)
    logits[np.arange(len(indices)), indices] = 5.0
    return logits


def test_greedy_ctc_decode_merges_repeats_and_drops_blanks():
    code = {c: i + 1 for i, c in enumerate(lipnet.ALPHABET)}
    blank = lipnet.BLANK
    # "bb-inn s e-ee--": repeats merge, and the blank between the e's keeps both.
    path = [
        code["b"],
        code["b"],
        blank,
        code["i"],
        code["n"],
        code["n"],
        code[" "],
        code["s"],
        code["e"],
        blank,
    ]
    path += [code["e"], code["e"], blank, blank]
    assert lipnet.greedy_ctc_decode(one_hot_logits(path)) == "bin see"


def test_word_and_character_error_rates():
    reference = "bin blue at f two now"
    assert lipnet.word_error_rate(reference, reference) == 0.0
    assert lipnet.word_error_rate(reference, "bin blue at s two now") == pytest.approx(1 / 6)
    assert lipnet.word_error_rate(reference, "bin blue f two now please") == pytest.approx(2 / 6)
    assert lipnet.word_error_rate(reference, "") == 1.0
    assert lipnet.edit_distance("kitten", "sitting") == 3
    assert lipnet.character_error_rate("abcd", "abd") == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="empty reference"):
        lipnet.word_error_rate("  ", "x")


def test_mouth_crops_centre_the_mouth():
    frames = np.zeros((2, 288, 360, 3), np.uint8)
    frames[:, 198:203, 148:153] = (255, 0, 0)  # a red mark at the mouth centre (150, 200)
    track = np.zeros((2, 68, 2))
    angles = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    track[:, LIPS] = np.stack([150 + 25 * np.cos(angles), 200 + 6 * np.sin(angles)], axis=1)
    track[:, 48], track[:, 54] = (125, 200), (175, 200)
    crops = lipnet.mouth_crops(frames, track)
    assert crops.shape == (2, 50, 100, 3)
    assert crops[0, 25, 50, 0] > 200 and crops[0, 5, 5].sum() == 0
