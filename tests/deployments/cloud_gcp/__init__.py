"""Tests of the GCP stack: Terraform runner, Secret Manager, the Cloud Run v2 pool."""
