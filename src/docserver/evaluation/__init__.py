"""The evaluation set (corpus/, questions.toml) and the runner behind `docserver eval`."""
