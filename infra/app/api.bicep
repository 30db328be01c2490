// The Flex Consumption (FC1) function app serving the bundle: Node 22, the user-assigned identity for everything,
// HTTPS only, TLS 1.2+, client certificates requested but optional (X.509 devices send one, symmetric-key devices
// have none), and the settings shared/config.ts reads.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param storageBlobEndpoint string
param storageTableEndpoint string
param deploymentContainerName string
param applicationInsightsConnectionString string
param keyVaultName string
param keyVaultUri string
param keyEncryptionKeyName string
param serviceOwnerSecretName string
param eventHubsNamespaceHost string
param eventHubName string
param idScope string
param customDomain string
param tablePrefix string
param instanceMemoryMB int
param maximumInstanceCount int

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Ask every client for a certificate and forward it in X-ARR-ClientCert; never `Required` (SAS devices have none).
    clientCertEnabled: true
    clientCertMode: 'Optional'
    // Key Vault references (DPS_SERVICE_OWNER_KEY) resolve with this identity, not a system-assigned one.
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      // App Service requests client certificates over HTTP/1.1 only (Azure Policy retired its client-certificate rule
      // "because HTTP 2.0 doesn't support client certificates"); the device SDKs speak HTTP/1.1 anyway.
      http20Enabled: false
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: { type: 'UserAssignedIdentity', userAssignedIdentityResourceId: identityId }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: { name: 'node', version: '22' }
    }
  }
}

var serviceHostNames = join(filter([site.properties.defaultHostName, customDomain], h => !empty(h)), ',')

// A child resource, so the settings can name the site's own default host name.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: {
    // Functions host storage over the user-assigned identity (no connection string, shared keys are off).
    AzureWebJobsStorage__accountName: storageAccountName
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    // Telemetry with Entra ID (the component has local auth disabled).
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    // DefaultAzureCredential picks the user-assigned identity by this client ID.
    AZURE_CLIENT_ID: identityClientId
    DPS_ID_SCOPE: idScope
    DPS_SERVICE_HOSTNAMES: serviceHostNames
    DPS_TABLES_ENDPOINT: storageTableEndpoint
    DPS_TABLE_PREFIX: tablePrefix
    DPS_KEY_VAULT_URL: keyVaultUri
    DPS_KEY_VAULT_KEY: keyEncryptionKeyName
    // Written once by infra/scripts/postprovision.*; resolved by the platform with keyVaultReferenceIdentity.
    DPS_SERVICE_OWNER_KEY: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${serviceOwnerSecretName})'
    DPS_EVENT_HUBS_NAMESPACE: eventHubsNamespaceHost
    DPS_EVENT_HUB_NAME: eventHubName
    // geoLatency: this app's region, as an ARM name (REGION_NAME, the platform's fallback, may be a display name).
    DPS_REGION: location
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output serviceHostNames string = serviceHostNames
