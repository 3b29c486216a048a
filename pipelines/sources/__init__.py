"""Where models and datasets come from: packaged models, local paths, the hub, and the cache."""
