"""The `loopline` command line: one module per command group, registered by cli.main."""
