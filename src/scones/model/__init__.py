"""Train, evaluate and register the vehicle classifier; the artifact it produces."""
