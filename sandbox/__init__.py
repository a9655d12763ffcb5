"""The local Numerai: GraphQL API subset, datasets, uploads, rounds and faults, for tests."""
