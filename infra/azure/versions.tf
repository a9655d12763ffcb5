terraform {
  required_version = ">= 1.5"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # 4.9 added azurerm_storage_container.storage_account_id (the container through ARM).
      version = "~> 4.9"
    }
  }
}

provider "azurerm" {
  subscription_id = var.subscription_id
  # The storage account takes Entra ID tokens only (shared keys are off), so Terraform uses one too.
  storage_use_azuread = true

  features {
    key_vault {
      # Purge protection keeps a deleted vault for soft_delete_retention_days; the next `up`
      # recovers it under the same name instead of failing on it.
      purge_soft_delete_on_destroy    = false
      recover_soft_deleted_key_vaults = true
    }
    resource_group {
      # `down` keeps the resource group with the storage account (trained models) in it.
      prevent_deletion_if_contains_resources = true
    }
  }
}
