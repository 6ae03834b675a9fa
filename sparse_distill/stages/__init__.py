"""The stages of a run and the commands' library functions: loading the config, the run
directory, one module per stage (vocab, teach, train_student, evaluate), the pipeline, the
benchmark and the fetching of real assets. Each returns what it did; the CLI shows it."""
