"""Training: two stages (audio2expression; renderer + adaptive smoothing), plain PyTorch, no Ray.

- :mod:`.config` - TrainConfig (the schedule presets in ``conf/schedule``);
- :mod:`.stage1`, :mod:`.stage2` - the step functions and ``train_stage1`` / ``train_stage2``;
- :mod:`.loop` - the shared epoch loop (sharded, resumable), :mod:`.checkpointing` - training state;
- :mod:`.run_log` - TensorBoard, metrics table, sample images; :mod:`.evaluate` - held-out metrics;
- :mod:`.export` - the speaker model directory; :mod:`.pipeline` - the parts of a run, :mod:`.driver` - the one driver of a whole run.

The Ray Train job that runs these on workers is :mod:`stableface.ray_jobs.train`.
"""
