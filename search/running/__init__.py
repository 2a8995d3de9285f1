"""Running a campaign's trials: the worker loop, one trial's training, promotion and seed re-runs on the
storage, signals, disk room, the reaper and `launch`."""
