// The storage account: Functions host storage, the Flex deployment package container, and the service's tables.
// Shared keys are off, so everything (host, deployment, our Table client) authenticates with Entra ID.
param name string
param location string
param tags object
param deploymentContainerName string
param tableNames string[]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: { defaultAction: 'Allow', bypass: 'AzureServices' }
  }

  resource blobServices 'blobServices' = {
    name: 'default'
    resource deploymentContainer 'containers' = {
      name: deploymentContainerName
      properties: { publicAccess: 'None' }
    }
  }

  resource tableServices 'tableServices' = {
    name: 'default'
    resource tables 'tables' = [
      for tableName in tableNames: {
        name: tableName
      }
    ]
  }
}

output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
// DPS_TABLES_ENDPOINT: https://<account>.table.core.windows.net (no trailing slash)
output tableEndpoint string = 'https://${storage.name}.table.${environment().suffixes.storage}'
