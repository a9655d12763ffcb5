# The identity of every node's Cloud Run job: it reads the two key secrets, uses the cache bucket and
# writes logs. Nothing else, and every grant but logging is on the one resource.
resource "google_service_account" "job" {
  account_id   = "${var.name_prefix}-job"
  display_name = "Numerai Nodes Cloud Run jobs"
  description  = "Runs node flows: reads the Numerai key secrets and the results bucket, writes logs."
}

resource "google_storage_bucket_iam_member" "job_objects" {
  bucket = google_storage_bucket.cache.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.job.email}"
}

# prefect-gcp's GcsBucket reads the bucket's metadata (storage.buckets.get) before every read or write;
# objectAdmin does not include it.
resource "google_storage_bucket_iam_member" "job_bucket_metadata" {
  bucket = google_storage_bucket.cache.name
  role   = "roles/storage.legacyBucketReader"
  member = "serviceAccount:${google_service_account.job.email}"
}

resource "google_secret_manager_secret_iam_member" "job_public_id" {
  secret_id = google_secret_manager_secret.public_id.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.job.email}"
}

resource "google_secret_manager_secret_iam_member" "job_secret_key" {
  secret_id = google_secret_manager_secret.secret_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.job.email}"
}

# Log entries belong to the project; there is no narrower resource to grant on.
resource "google_project_iam_member" "job_logs" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.job.email}"
}

# The identity of a Cloud Run worker: it creates, runs and deletes one job per flow run, as the job
# service account and no other.
resource "google_service_account" "worker" {
  count = var.create_worker_service_account ? 1 : 0

  account_id   = "${var.name_prefix}-worker"
  display_name = "Numerai Nodes Cloud Run worker"
  description  = "Runs the Prefect Cloud Run v2 worker: creates a job per flow run, as the job service account."
}

# The worker names each job after its flow run, so the grant cannot be narrowed to known jobs.
resource "google_project_iam_member" "worker_run" {
  count = var.create_worker_service_account ? 1 : 0

  project = var.project
  role    = "roles/run.developer"
  member  = "serviceAccount:${google_service_account.worker[0].email}"
}

resource "google_service_account_iam_member" "worker_acts_as_job" {
  count = var.create_worker_service_account ? 1 : 0

  service_account_id = google_service_account.job.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.worker[0].email}"
}
