"""Media: probe, prepare (mezzanine), frame-exact splice render, audio mix."""
