"""Attention and other modules of the plugin."""
