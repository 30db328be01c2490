// Key Vault in RBAC mode with soft delete and purge protection, and the key-encryption key that wraps the service's
// data keys (RSA, wrapKey/unwrapKey only: it never leaves the vault). The root policy key is a secret written once by
// infra/scripts/postprovision.*, never by this template.
param name string
param location string
param tags object
param enablePurgeProtection bool
param keyName string = 'dps-kek'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // Once on it cannot be turned off; `null` (not false) is what the API accepts for "off".
    enablePurgeProtection: enablePurgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
    networkAcls: { defaultAction: 'Allow', bypass: 'AzureServices' }
  }
}

resource keyEncryptionKey 'Microsoft.KeyVault/vaults/keys@2023-07-01' = {
  parent: vault
  name: keyName
  tags: tags
  properties: {
    kty: 'RSA'
    keySize: 3072
    keyOps: ['wrapKey', 'unwrapKey']
    attributes: { enabled: true }
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
output keyName string = keyEncryptionKey.name
