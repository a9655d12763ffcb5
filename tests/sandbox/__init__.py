"""Tests of the local Numerai sandbox."""
