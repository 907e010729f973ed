"""One module per suite; each exposes `run(ctx, options) -> result document`."""
