"""pct-cf: cross-domain collaborative filtering fused with a deep model, with cold start."""
