"""Audio features: log-mel spectrograms and one window of mel frames per video frame."""
