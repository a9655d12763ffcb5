output "subscription_id" {
  description = "Azure subscription of the stack."
  value       = var.subscription_id
}

output "resource_group" {
  description = "Resource group that holds the stack and the flow runs' container groups."
  value       = azurerm_resource_group.nodes.name
}

output "location" {
  description = "Azure region of the container groups."
  value       = azurerm_resource_group.nodes.location
}

output "registry_name" {
  description = "Name of the container registry."
  value       = azurerm_container_registry.images.name
}

output "registry_login_server" {
  description = "Login server of the registry; the node image is <registry_login_server>/numerai-nodes:<tag>."
  value       = azurerm_container_registry.images.login_server
}

output "storage_account" {
  description = "Storage account behind the AzureBlobStorageContainer result block."
  value       = azurerm_storage_account.results.name
}

output "results_container" {
  description = "Blob container for Prefect results and the model store."
  value       = azurerm_storage_container.results.name
}

output "blob_endpoint" {
  description = "Blob endpoint of the storage account (the block's account_url)."
  value       = azurerm_storage_account.results.primary_blob_endpoint
}

output "key_vault_name" {
  description = "Name of the Key Vault that holds the Numerai keys."
  value       = azurerm_key_vault.keys.name
}

output "key_vault_uri" {
  description = "URI of the Key Vault that holds the Numerai keys."
  value       = azurerm_key_vault.keys.vault_uri
}

output "public_id_secret" {
  description = "Name of the Key Vault secret with the Numerai public id (the secret, never its value)."
  value       = var.public_id_secret
}

output "secret_key_secret" {
  description = "Name of the Key Vault secret with the Numerai secret key (the secret, never its value)."
  value       = var.secret_key_secret
}

output "job_identity_id" {
  description = "Resource ID of the managed identity the node containers run as."
  value       = azurerm_user_assigned_identity.job.id
}

output "job_identity_client_id" {
  description = "Client ID of the job identity (AZURE_CLIENT_ID in the containers)."
  value       = azurerm_user_assigned_identity.job.client_id
}

output "worker_identity_id" {
  description = "Resource ID of the ACI worker's managed identity; empty when create_worker_identity is false."
  value       = var.create_worker_identity ? azurerm_user_assigned_identity.worker[0].id : ""
}

output "worker_identity_client_id" {
  description = "Client ID of the ACI worker's managed identity; empty when create_worker_identity is false."
  value       = var.create_worker_identity ? azurerm_user_assigned_identity.worker[0].client_id : ""
}

output "push_pool" {
  description = "Whether the stack was set up for a Prefect Cloud push pool (azure-container-instance:push)."
  value       = var.push_pool
}

output "push_principal_id" {
  description = "Object id of the push pool's service principal granted the worker role; empty when there is none."
  value       = var.push_principal_id
}
