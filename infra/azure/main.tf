locals {
  # Registry, storage account and vault names are global: a suffix from the subscription and the group
  # keeps them unique, and the same on every `up`, so a kept storage account is found again.
  suffix               = substr(sha1("${var.subscription_id}/${var.resource_group}"), 0, 8)
  compact_prefix       = replace(var.name_prefix, "-", "")
  registry_name        = "${local.compact_prefix}${local.suffix}"
  storage_account_name = "${local.compact_prefix}${local.suffix}"
  key_vault_name       = "${var.name_prefix}-${local.suffix}"
  tags                 = merge({ app = var.name_prefix }, var.tags)
}

data "azurerm_client_config" "current" {}

resource "azurerm_resource_group" "nodes" {
  name     = var.resource_group
  location = var.location
  tags     = local.tags
}

# The node image: numerai-nodes:<tag> is pushed here and the containers pull it as the job identity.
resource "azurerm_container_registry" "images" {
  #checkov:skip=CKV_AZURE_139:Containers without a VNet and the user's `docker push` reach the registry over the internet; pulls need an Entra ID token (AcrPull).
  #checkov:skip=CKV_AZURE_163:Vulnerability scanning is Defender for Cloud, billed per image; the image holds code only, never keys or data.
  #checkov:skip=CKV_AZURE_164:Content trust needs the Premium SKU; only the job identity may pull and only the user may push.
  #checkov:skip=CKV_AZURE_165:Geo-replication needs the Premium SKU; one region runs the nodes.
  #checkov:skip=CKV_AZURE_166:Quarantine needs the Premium SKU; images come from this project's own Dockerfile.
  #checkov:skip=CKV_AZURE_167:Retention of untagged manifests needs the Premium SKU; registry_sku = "Premium" enables it.
  #checkov:skip=CKV_AZURE_233:Zone redundancy needs the Premium SKU; a registry outage delays a round, the image is rebuilt from the sources.
  #checkov:skip=CKV_AZURE_237:Dedicated data endpoints need the Premium SKU and only matter behind a firewall.
  name                = local.registry_name
  resource_group_name = azurerm_resource_group.nodes.name
  location            = azurerm_resource_group.nodes.location
  sku                 = var.registry_sku
  admin_enabled       = false
  tags                = local.tags
}

# Prefect results, the trained models among them: a fresh container loads the model instead of training.
resource "azurerm_storage_account" "results" {
  #checkov:skip=CKV_AZURE_33:The account serves blobs only; its queue service is unused, so there is nothing to log.
  #checkov:skip=CKV_AZURE_35:Containers without a VNet reach the account over the internet; access needs an Entra ID token and a data role, shared keys are off.
  #checkov:skip=CKV_AZURE_59:As CKV_AZURE_35: public network access, never anonymous access (allow_nested_items_to_be_public = false).
  #checkov:skip=CKV_AZURE_206:Results and models can be rebuilt from Numerai's data; storage_replication = "GRS" replicates them.
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed encryption; the account holds results and models, never keys.
  #checkov:skip=CKV2_AZURE_33:A private endpoint needs a VNet the containers do not have.
  #checkov:skip=CKV2_AZURE_41:Shared keys are off, so no SAS can be signed with them; a SAS expiration policy has nothing to govern.
  name                     = local.storage_account_name
  resource_group_name      = azurerm_resource_group.nodes.name
  location                 = azurerm_resource_group.nodes.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = var.storage_replication
  tags                     = local.tags

  https_traffic_only_enabled      = true
  min_tls_version                 = "TLS1_2"
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = false
  local_user_enabled              = false

  blob_properties {
    # Versioning guards against an accidental overwrite; old versions expire (management policy below).
    versioning_enabled = true

    delete_retention_policy {
      days = var.delete_retention_days
    }

    container_delete_retention_policy {
      days = var.delete_retention_days
    }
  }
}

resource "azurerm_storage_management_policy" "results" {
  storage_account_id = azurerm_storage_account.results.id

  rule {
    name    = "expire-old-versions"
    enabled = true

    filters {
      blob_types = ["blockBlob"]
    }

    actions {
      version {
        delete_after_days_since_creation = var.noncurrent_version_days
      }
    }
  }
}

resource "azurerm_storage_container" "results" {
  #checkov:skip=CKV2_AZURE_21:Blob read logs need a Log Analytics workspace, billed per GB; only the job identity may read, and the Activity Log records role changes.
  name                  = "results"
  storage_account_id    = azurerm_storage_account.results.id
  container_access_type = "private"
}

# The vault only. The secrets in it are set by `numerai-nodes infra azure up` through the Key Vault
# API, so the Numerai keys never enter Terraform variables, plans or state.
resource "azurerm_key_vault" "keys" {
  #checkov:skip=CKV_AZURE_109:Containers without a VNet and the CLI on the user's machine reach the vault over the internet; every call needs an Entra ID token and an RBAC role.
  #checkov:skip=CKV_AZURE_189:As CKV_AZURE_109: public network access, RBAC authorization on every secret read.
  #checkov:skip=CKV2_AZURE_32:A private endpoint needs a VNet the containers do not have.
  name                = local.key_vault_name
  resource_group_name = azurerm_resource_group.nodes.name
  location            = azurerm_resource_group.nodes.location
  tenant_id           = data.azurerm_client_config.current.tenant_id
  sku_name            = "standard"
  tags                = local.tags

  enable_rbac_authorization     = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = var.key_vault_retention_days
  public_network_access_enabled = true

  network_acls {
    default_action = "Allow"
    bypass         = "AzureServices"
  }
}
