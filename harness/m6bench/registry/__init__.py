"""The plugin registry: typed registries, the catalog of everything plugins registered,
and the code identity of the harness and each plugin."""
