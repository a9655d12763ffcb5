variable "subscription_id" {
  type        = string
  description = "ID of the Azure subscription the stack lives in."
}

variable "location" {
  type        = string
  description = "Azure region of the resource group, the registry, the vault, the storage account and the containers."
  default     = "eastus"
}

variable "resource_group" {
  type        = string
  description = "Name of the resource group the stack creates; every resource lives in it."
  default     = "numerai-nodes"
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name: registry, storage account and vault (with a suffix from the subscription and group), identities."
  default     = "numerai-nodes"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,13}$", var.name_prefix))
    error_message = "name_prefix must be 3-14 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "registry_sku" {
  type        = string
  description = "SKU of the container registry: Basic, Standard or Premium (Premium adds private endpoints and geo-replication)."
  default     = "Basic"

  validation {
    condition     = contains(["Basic", "Standard", "Premium"], var.registry_sku)
    error_message = "registry_sku must be Basic, Standard or Premium."
  }
}

variable "storage_replication" {
  type        = string
  description = "Replication of the storage account that holds results and trained models: LRS, ZRS, GRS or GZRS."
  default     = "LRS"
}

variable "delete_retention_days" {
  type        = number
  description = "Days a deleted blob or container stays recoverable (soft delete)."
  default     = 7
}

variable "noncurrent_version_days" {
  type        = number
  description = "Days a replaced or deleted blob version is kept before it is deleted for good."
  default     = 30
}

variable "key_vault_retention_days" {
  type        = number
  description = "Days a deleted vault or secret stays recoverable (7-90); purge protection keeps it that long."
  default     = 7
}

variable "public_id_secret" {
  type        = string
  description = "Name of the Key Vault secret that holds the Numerai public id (the value is set by the CLI, not Terraform)."
  default     = "numerai-public-id"
}

variable "secret_key_secret" {
  type        = string
  description = "Name of the Key Vault secret that holds the Numerai secret key (the value is set by the CLI, not Terraform)."
  default     = "numerai-secret-key"
}

variable "create_worker_identity" {
  type        = bool
  description = "Also create a managed identity for a hybrid ACI worker: may create container groups in the resource group, as the job identity only."
  default     = true
}

variable "push_pool" {
  type        = bool
  description = "Whether the nodes run on a Prefect Cloud push pool (azure-container-instance:push), which starts container groups as the service principal push_principal_id. Set by `infra azure up --push`."
  default     = false
}

variable "push_principal_id" {
  type        = string
  description = "Object id of the push pool's service principal (made by you with `az ad sp create-for-rbac`; its secret is kept in a Prefect block, never here), granted the worker role. Empty: none. Set by `infra azure up --push`."
  default     = ""

  validation {
    condition     = var.push_principal_id == "" || can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.push_principal_id))
    error_message = "push_principal_id must be an object id (a lowercase GUID) or empty."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource that takes tags."
  default     = {}
}
