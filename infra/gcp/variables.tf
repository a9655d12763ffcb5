variable "project" {
  type        = string
  description = "ID of the GCP project the stack lives in."
}

variable "region" {
  type        = string
  description = "Region of the Cloud Run jobs, the Artifact Registry repository and the bucket."
  default     = "us-central1"
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name: repository, service accounts, bucket (with the project)."
  default     = "numerai-nodes"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name_prefix))
    error_message = "name_prefix must be 3-21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "bucket_name" {
  type        = string
  description = "Name of the bucket for Prefect results and the model cache; empty means <project>-<name_prefix>."
  default     = ""
}

variable "public_id_secret" {
  type        = string
  description = "Secret Manager secret id that holds the Numerai public id (the value is added by the CLI, not Terraform)."
  default     = "numerai-public-id"
}

variable "secret_key_secret" {
  type        = string
  description = "Secret Manager secret id that holds the Numerai secret key (the value is added by the CLI, not Terraform)."
  default     = "numerai-secret-key"
}

variable "noncurrent_version_days" {
  type        = number
  description = "Days a replaced or deleted cache object is kept before it is deleted for good."
  default     = 30
}

variable "image_versions_kept" {
  type        = number
  description = "How many of the most recent node image versions Artifact Registry keeps; older ones are cleaned up."
  default     = 10
}

variable "force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete the bucket even when it still holds results and cached models."
  default     = false
}

variable "create_worker_service_account" {
  type        = bool
  description = "Also create a service account for a Cloud Run worker: may create jobs and run them as the job service account only."
  default     = true
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels."
  default     = {}
}

variable "push_pool" {
  type        = bool
  description = "Whether the nodes run on a Prefect Cloud push pool (cloud-run-v2:push), which starts jobs with a key of the worker service account (made by you, kept in a Prefect block, never here). Set by `infra gcp up --push`."
  default     = false
}

variable "worker_image" {
  type        = string
  description = "Image of an always-on Prefect worker run as a Cloud Run service (e.g. the node image, which holds prefect-gcp). Empty means no worker service: run `prefect worker start` elsewhere, or use a push pool."
  default     = ""
}

variable "work_pool_name" {
  type        = string
  description = "Prefect work pool the worker service takes flow runs from."
  default     = "cloud-run"
}

variable "prefect_api_url" {
  type        = string
  description = "Prefect API URL of the worker service (e.g. https://api.prefect.cloud/api/accounts/<id>/workspaces/<id>). Needed with worker_image."
  default     = ""
}

variable "worker_api_key" {
  type        = bool
  description = "Whether the worker service reads PREFECT_API_KEY from the prefect_api_key_secret secret (false for a self-hosted server without auth)."
  default     = true
}

variable "prefect_api_key_secret" {
  type        = string
  description = "Secret Manager secret id that holds the worker's PREFECT_API_KEY (the value is added by the CLI, not Terraform)."
  default     = "prefect-api-key"
}
