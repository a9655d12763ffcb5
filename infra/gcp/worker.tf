# Optional: the Prefect worker itself, always on, as a Cloud Run service (worker_image set). It only
# calls out (to the Prefect API and the Cloud Run Admin API), so nothing may call in.
locals {
  hosted_worker = var.worker_image != ""
}

# The secret only; `numerai-nodes infra gcp up` adds PREFECT_API_KEY as a version through the API,
# so the key never enters Terraform variables or state.
resource "google_secret_manager_secret" "prefect_api_key" {
  count = local.hosted_worker ? 1 : 0

  secret_id = var.prefect_api_key_secret
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.services]
}

resource "google_secret_manager_secret_iam_member" "worker_prefect_api_key" {
  count = local.hosted_worker ? 1 : 0

  secret_id = google_secret_manager_secret.prefect_api_key[0].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.worker[0].email}"
}

resource "google_cloud_run_v2_service" "worker" {
  count = local.hosted_worker ? 1 : 0

  name                = "${var.name_prefix}-worker"
  location            = var.region
  description         = "Prefect worker of the ${var.work_pool_name} pool: starts a Cloud Run job per flow run."
  labels              = local.labels
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = false

  template {
    service_account = google_service_account.worker[0].email

    # One worker, always on: a second would only race the first for the same flow runs.
    scaling {
      min_instance_count = 1
      max_instance_count = 1
    }

    containers {
      image   = var.worker_image
      command = ["prefect"]
      # --with-healthcheck serves /health on port 8080, Cloud Run's startup and liveness probes.
      args = ["worker", "start", "--pool", var.work_pool_name, "--type", "cloud-run-v2", "--with-healthcheck"]

      resources {
        limits = {
          cpu    = "1"
          memory = "1Gi"
        }
        # The worker polls between requests: CPU must stay allocated when no request is in flight.
        cpu_idle = false
      }

      ports {
        container_port = 8080
      }

      env {
        name  = "PREFECT_API_URL"
        value = var.prefect_api_url
      }

      dynamic "env" {
        for_each = var.worker_api_key ? [1] : []
        content {
          name = "PREFECT_API_KEY"
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.prefect_api_key[0].secret_id
              version = "latest"
            }
          }
        }
      }

      startup_probe {
        http_get {
          path = "/health"
          port = 8080
        }
        initial_delay_seconds = 5
        period_seconds        = 10
        failure_threshold     = 12
      }

      liveness_probe {
        http_get {
          path = "/health"
          port = 8080
        }
        period_seconds    = 30
        failure_threshold = 3
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.create_worker_service_account
      error_message = "worker_image needs create_worker_service_account = true: the service runs as the worker service account."
    }
    precondition {
      condition     = var.prefect_api_url != ""
      error_message = "worker_image needs prefect_api_url: the worker must know which Prefect API to poll."
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.worker_prefect_api_key]
}
