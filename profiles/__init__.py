"""Shipped head profiles (JSON), installed as the package ``pasta_lens.profiles``; read with
``pasta_lens.load_profile(name)``. Each file is a :class:`pasta_lens.HeadProfile` with its provenance."""
