locals {
  bucket_name = var.bucket_name != "" ? var.bucket_name : "${var.project}-${var.name_prefix}"
  labels      = merge({ app = var.name_prefix }, var.labels)
  services = [
    "artifactregistry.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ]
}

resource "google_project_service" "services" {
  for_each = toset(local.services)

  service = each.value
  # Other workloads in the project may use these APIs: destroying the stack leaves them on.
  disable_on_destroy = false
}

# The node image: numerai-nodes:<tag> is pushed here and Cloud Run jobs pull it.
resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption; the image holds code only, never keys or data.
  location      = var.region
  repository_id = var.name_prefix
  format        = "DOCKER"
  description   = "Numerai Nodes images run by the Cloud Run v2 work pool."
  labels        = local.labels

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.image_versions_kept
    }
  }
  cleanup_policies {
    id     = "delete-older"
    action = "DELETE"
    condition {
      tag_state = "ANY"
    }
  }

  depends_on = [google_project_service.services]
}

# Prefect results, the trained models among them: a fresh container loads the model instead of training.
resource "google_storage_bucket" "cache" {
  #checkov:skip=CKV_GCP_62:Usage logs need a second bucket; Cloud Audit Logs record access to this one.
  name          = local.bucket_name
  location      = var.region
  force_destroy = var.force_destroy
  labels        = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  # Versioning guards against an accidental overwrite; old versions expire so storage stays bounded.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.services]
}

# The secrets only. Their values are added as secret versions by `numerai-nodes infra gcp up`
# through the Secret Manager API, so the Numerai keys never enter Terraform variables or state.
resource "google_secret_manager_secret" "public_id" {
  secret_id = var.public_id_secret
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.services]
}

resource "google_secret_manager_secret" "secret_key" {
  secret_id = var.secret_key_secret
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.services]
}
