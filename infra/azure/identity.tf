# The identity of every node's container: it pulls the image, uses the results container and reads
# the two key secrets. Nothing else, and every grant is on the one resource.
resource "azurerm_user_assigned_identity" "job" {
  name                = "${var.name_prefix}-job"
  resource_group_name = azurerm_resource_group.nodes.name
  location            = azurerm_resource_group.nodes.location
  tags                = local.tags
}

resource "azurerm_role_assignment" "job_pull" {
  scope                = azurerm_container_registry.images.id
  role_definition_name = "AcrPull"
  principal_id         = azurerm_user_assigned_identity.job.principal_id
  principal_type       = "ServicePrincipal"
}

# The results container only, not the account: prefect-azure reads and writes blobs in it.
resource "azurerm_role_assignment" "job_results" {
  scope                = "${azurerm_storage_account.results.id}/blobServices/default/containers/${azurerm_storage_container.results.name}"
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.job.principal_id
  principal_type       = "ServicePrincipal"
}

# The secrets do not exist when Terraform runs (the CLI sets them), so the grant is on the vault,
# which holds those two secrets and nothing else.
resource "azurerm_role_assignment" "job_secrets" {
  scope                = azurerm_key_vault.keys.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.job.principal_id
  principal_type       = "ServicePrincipal"
}

# Whoever runs `up` sets the secrets through the Key Vault API; an RBAC vault grants that to no one
# by default, not even the subscription's owner.
resource "azurerm_role_assignment" "deployer_secrets" {
  scope                = azurerm_key_vault.keys.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

# The identity of a hybrid ACI worker: it creates, watches and deletes one container group per flow
# run in the resource group, and gives them the job identity and no other.
resource "azurerm_user_assigned_identity" "worker" {
  count = var.create_worker_identity ? 1 : 0

  name                = "${var.name_prefix}-worker"
  resource_group_name = azurerm_resource_group.nodes.name
  location            = azurerm_resource_group.nodes.location
  tags                = local.tags
}

locals {
  # The worker role serves a hybrid worker's identity, a push pool's service principal, or both.
  worker_role = var.create_worker_identity || var.push_principal_id != ""
}

# The worker names each container group after its flow run and creates it through an ARM
# deployment, so the grant cannot be narrowed to known groups: it stays in the resource group.
resource "azurerm_role_definition" "worker" {
  count = local.worker_role ? 1 : 0

  name        = "${var.name_prefix}-aci-worker-${local.suffix}"
  scope       = azurerm_resource_group.nodes.id
  description = "Numerai Nodes ACI worker: container groups and ARM deployments in one resource group."

  permissions {
    actions = [
      "Microsoft.ContainerInstance/containerGroups/*",
      "Microsoft.Resources/deployments/*",
    ]
    not_actions = []
  }

  assignable_scopes = [azurerm_resource_group.nodes.id]
}

resource "azurerm_role_assignment" "worker_containers" {
  count = var.create_worker_identity ? 1 : 0

  scope              = azurerm_resource_group.nodes.id
  role_definition_id = azurerm_role_definition.worker[0].role_definition_resource_id
  principal_id       = azurerm_user_assigned_identity.worker[0].principal_id
  principal_type     = "ServicePrincipal"
}

resource "azurerm_role_assignment" "worker_assigns_job_identity" {
  count = var.create_worker_identity ? 1 : 0

  scope                = azurerm_user_assigned_identity.job.id
  role_definition_name = "Managed Identity Operator"
  principal_id         = azurerm_user_assigned_identity.worker[0].principal_id
  principal_type       = "ServicePrincipal"
}

# A Prefect Cloud push pool's service principal (`infra azure up --push`): Prefect Cloud starts the
# container groups with it, so it gets the worker identity's grants and no more. You create it with
# no role (`az ad sp create-for-rbac`); its secret lives in a Prefect block, never in Terraform.
resource "azurerm_role_assignment" "push_containers" {
  count = var.push_principal_id != "" ? 1 : 0

  scope              = azurerm_resource_group.nodes.id
  role_definition_id = azurerm_role_definition.worker[0].role_definition_resource_id
  principal_id       = var.push_principal_id
  principal_type     = "ServicePrincipal"
}

resource "azurerm_role_assignment" "push_assigns_job_identity" {
  count = var.push_principal_id != "" ? 1 : 0

  scope                = azurerm_user_assigned_identity.job.id
  role_definition_name = "Managed Identity Operator"
  principal_id         = var.push_principal_id
  principal_type       = "ServicePrincipal"
}
