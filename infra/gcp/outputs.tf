output "project" {
  description = "GCP project of the stack."
  value       = var.project
}

output "region" {
  description = "Region of the Cloud Run jobs."
  value       = var.region
}

output "repository_id" {
  description = "Artifact Registry repository id."
  value       = google_artifact_registry_repository.images.repository_id
}

output "repository_url" {
  description = "Docker URL of the repository; the node image is <repository_url>/numerai-nodes:<tag>."
  value       = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}"
}

output "bucket_name" {
  description = "Bucket behind the GcsBucket result storage block (Prefect results and the model cache)."
  value       = google_storage_bucket.cache.name
}

output "service_account_email" {
  description = "Service account the Cloud Run jobs run as."
  value       = google_service_account.job.email
}

output "worker_service_account_email" {
  description = "Service account for a Cloud Run worker; empty when create_worker_service_account is false."
  value       = var.create_worker_service_account ? google_service_account.worker[0].email : ""
}

output "public_id_secret" {
  description = "Secret Manager secret id of the Numerai public id (the secret, never its value)."
  value       = google_secret_manager_secret.public_id.secret_id
}

output "secret_key_secret" {
  description = "Secret Manager secret id of the Numerai secret key (the secret, never its value)."
  value       = google_secret_manager_secret.secret_key.secret_id
}

output "push_pool" {
  description = "Whether the stack was set up for a Prefect Cloud push pool (cloud-run-v2:push)."
  value       = var.push_pool
}

output "worker_image" {
  description = "Image of the worker service; empty when the stack runs no worker."
  value       = var.worker_image
}

output "worker_service_name" {
  description = "Cloud Run service running the Prefect worker; empty when the stack runs none."
  value       = local.hosted_worker ? google_cloud_run_v2_service.worker[0].name : ""
}

output "prefect_api_key_secret" {
  description = "Secret Manager secret id of the worker's PREFECT_API_KEY (the secret, never its value); empty without a worker service."
  value       = local.hosted_worker ? google_secret_manager_secret.prefect_api_key[0].secret_id : ""
}
