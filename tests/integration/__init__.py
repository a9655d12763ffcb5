"""Integration tests against real servers, and the helpers that start them."""
